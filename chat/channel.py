"""The broadcast channel (``BROADCAST_CHANNEL_ID``): every broadcast signal is also posted to one channel or group
where the bot is an admin, once, and the alerts of its position are posted there as replies to that post.

The channel is one more recipient of the tracked position (``scanner.track_signal``: the per-chat dedupe key posts
it once; the monitor's alerts go to every recipient). Here, in the outbox drain: after the channel's copy of a
signal is sent, its message id is kept (``channel_post:<position id>`` in the store's state table); an alert to the
channel is sent as a reply to it. The position is read from the message: the signal's tracking line ("Tracking as
#12") and the alert's title ("... LONG</b> #12"), both rendered by the bot.
"""

from __future__ import annotations

import re

from position_manager import PositionStore

_SIGNAL_POSITION = re.compile(r"Tracking as #(\d+)")
_ALERT_POSITION = re.compile(r"</b> #(\d+)")


def signal_position(html_text: str) -> int | None:
    """The position a tracked signal's message announces ("Tracking as #12"), or None."""
    match = _SIGNAL_POSITION.search(html_text)
    return int(match[1]) if match else None


def alert_position(html_text: str) -> int | None:
    """The position an alert is about (its title ``<b>BTCUSDT 1h LONG</b> #12``), or None."""
    match = _ALERT_POSITION.search(html_text)
    return int(match[1]) if match else None


def post_key(position_id: int) -> str:
    return f"channel_post:{position_id}"


def remember_post(store: PositionStore, html_text: str, message_ids: tuple[int, ...]) -> None:
    """After the channel's copy of a signal was sent: keep its message id for the replies."""
    position = signal_position(html_text)
    if position is not None and message_ids:
        store.set_state(post_key(position), str(message_ids[0]))


def reply_target(store: PositionStore, html_text: str) -> int | None:
    """The channel post an alert replies to, or None (sent as a plain post)."""
    position = alert_position(html_text)
    value = store.get_state(post_key(position)) if position is not None else None
    return int(value) if value else None
