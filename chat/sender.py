"""The one chokepoint through which the bot sends anything to Telegram.

Every outgoing message goes through :class:`Sender`: HTML is split below Telegram's 4096-character limit without
breaking tags or entities, photo captions stay within 1024 characters (the rest follows as a message), flood
control (``RetryAfter``) is waited out and retried so nothing is lost, a call that timed out after its request
went out (Telegram may have delivered it) is never sent again (``UNCERTAIN``), a user who blocked the bot
(``Forbidden``) is reported to ``on_blocked`` (the bot unsubscribes them), a group that became a supergroup
(``ChatMigrated``) is reported to ``on_migrated`` and the message goes to the new chat, and a message Telegram
cannot parse as HTML is re-sent as plain text rather than dropped.

Lengths are measured in UTF-16 code units of the raw HTML, which is never shorter than the text Telegram counts
after parsing the markup, so a chunk that passes here passes there.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import httpx
from telegram import Bot, InlineKeyboardMarkup, InputFile, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TimedOut

logger = logging.getLogger(__name__)

TEXT_LIMIT = 4000  # below Telegram's 4096 with room to spare
CAPTION_LIMIT = 1024
MAX_ATTEMPTS = 5  # per API call: flood-control waits and transient network errors
MAX_RETRY_AFTER_SECONDS = 120.0  # longer waits are capped; the next attempt asks Telegram again

_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^>]*)>")


class Delivery(StrEnum):
    SENT = "sent"
    BLOCKED = "blocked"  # the user blocked the bot or the chat is gone: permanent
    FAILED = "failed"  # Telegram refused the content: permanent for this message
    DEFERRED = "deferred"  # flood control or network trouble outlasted the retries: try again later
    UNCERTAIN = "uncertain"  # timed out after the request went out: maybe delivered, so never sent again


@dataclass(frozen=True, slots=True)
class SendResult:
    delivery: Delivery
    message_ids: tuple[int, ...] = ()
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.delivery is Delivery.SENT

    @property
    def settled(self) -> bool:
        """Nothing to send again: delivered, or maybe delivered (a resend could duplicate it)."""
        return self.delivery in (Delivery.SENT, Delivery.UNCERTAIN)


def escape(text: object) -> str:
    """Escape a dynamic string for Telegram HTML (``<``, ``>``, ``&``)."""
    return html.escape(str(text), quote=False)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def strip_html(text: str) -> str:
    """The plain text of a Telegram-HTML string (tags removed, entities decoded)."""
    return html.unescape(_TAG.sub("", text))


def split_html(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split Telegram HTML into chunks of at most ``limit`` UTF-16 units, preferring line boundaries.

    Tags open at a cut are closed at the end of the chunk and reopened at the start of the next one; a cut never
    falls inside a tag or an ``&entity;``. Empty input gives no chunks.
    """
    if not text.strip():
        return []
    if utf16_len(text) <= limit:
        return [text]
    pieces: list[tuple[str, str]] = []  # (piece, its separator from the previous piece in the text)
    for line in text.split("\n"):
        parts = _hard_split(line, limit // 2) if utf16_len(line) > limit // 2 else [line]
        pieces.extend((part, "\n" if i == 0 else "") for i, part in enumerate(parts))  # a cut line stays one line
    chunks: list[str] = []
    current = ""
    stack: list[tuple[str, str]] = []  # (tag name, opening tag text) open at the end of `current`
    for piece, separator in pieces:
        joiner = separator if current else ""
        new_stack = _track_tags(stack, piece)
        closing = "".join(f"</{name}>" for name, _ in reversed(new_stack))
        if current and utf16_len(current + joiner + piece + closing) > limit:
            chunks.append(current + "".join(f"</{name}>" for name, _ in reversed(stack)))
            current = "".join(tag for _, tag in stack) + piece
        else:
            current = current + joiner + piece
        stack = new_stack
    if current.strip():
        chunks.append(current + "".join(f"</{name}>" for name, _ in reversed(stack)))
    return [c for c in chunks if strip_html(c).strip()]


def _track_tags(stack: list[tuple[str, str]], piece: str) -> list[tuple[str, str]]:
    out = list(stack)
    for match in _TAG.finditer(piece):
        closing, name = match[1] == "/", match[2].lower()
        if not closing:
            out.append((name, match[0]))
        else:
            for i in range(len(out) - 1, -1, -1):
                if out[i][0] == name:
                    del out[i]
                    break
    return out


def _hard_split(line: str, size: int) -> list[str]:
    """Cut one over-long line into pieces of about ``size`` characters, never inside a tag or an entity."""
    out = []
    while utf16_len(line) > size:
        cut = size
        window = line[:cut]
        lt, gt = window.rfind("<"), window.rfind(">")
        if lt > gt:
            cut = lt
        amp, semi = window.rfind("&"), window.rfind(";")
        if amp > semi and amp < cut and line.find(";", amp) - amp <= 10:
            cut = amp
        cut = max(cut, 1)
        out.append(line[:cut])
        line = line[cut:]
    out.append(line)
    return out


def caption_fits(caption: str) -> bool:
    return utf16_len(caption) <= CAPTION_LIMIT


def maybe_delivered(exc: TimedOut) -> bool:
    """Whether a timed-out call may have reached Telegram: only a connect or pool timeout proves it did not
    (PTB raises ``TimedOut`` from the httpx timeout; a read or write timeout comes after the request went out)."""
    return not isinstance(exc.__cause__, httpx.ConnectTimeout | httpx.PoolTimeout)


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class Sender:
    """Sends text, photos and documents; the only code that calls the Bot API's send methods.

    ``on_blocked(chat_id)`` is awaited when Telegram answers 403 Forbidden (user blocked the bot, kicked it, or
    deactivated); ``on_migrated(old, new)`` when a group became the supergroup ``new`` (sends to ``old`` go to
    ``new`` from then on); ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        bot: Bot,
        *,
        on_blocked: Callable[[int], Awaitable[None]] | None = None,
        on_migrated: Callable[[int, int], Awaitable[None]] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.bot = bot
        self.on_blocked = on_blocked
        self.on_migrated = on_migrated
        self._sleep = sleep
        self._moved: dict[int, int] = {}  # group id -> its supergroup's id (ChatMigrated)

    def target(self, chat_id: int) -> int:
        """Where a message to ``chat_id`` goes: its supergroup once Telegram said the group migrated."""
        return self._moved.get(chat_id, chat_id)

    async def text(
        self,
        chat_id: int,
        text_html: str,
        *,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to: int | None = None,
    ) -> SendResult:
        """Send HTML, split into as many messages as needed; the keyboard goes on the last one."""
        chunks = split_html(text_html) or ["(empty)"]
        ids: list[int] = []
        delivery = Delivery.SENT
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            result = await self._call(
                chat_id,
                lambda chunk=chunk, last=last, first=(i == 0), html_mode=True: self.bot.send_message(
                    self.target(chat_id),
                    chunk if html_mode else strip_html(chunk),
                    parse_mode=ParseMode.HTML if html_mode else None,
                    reply_markup=reply_markup if last else None,
                    reply_to_message_id=reply_to if first else None,
                    allow_sending_without_reply=True,
                ),
            )
            if not result.settled:
                return SendResult(result.delivery, tuple(ids), result.reason)
            if result.delivery is Delivery.UNCERTAIN:  # that chunk may be there: go on with the rest, never resend
                delivery = Delivery.UNCERTAIN
            ids.extend(result.message_ids)
        return SendResult(delivery, tuple(ids))

    async def photo(
        self,
        chat_id: int,
        png: bytes,
        caption_html: str,
        *,
        follow_up_html: str | None = None,
        reply_markup: InlineKeyboardMarkup | None = None,
        filename: str = "chart.png",
    ) -> SendResult:
        """Send a photo with a caption of at most 1024 characters, then ``follow_up_html`` if given.

        A caption that is too long is moved into the follow-up. The keyboard goes on the last message sent.
        """
        if not caption_fits(caption_html):
            follow_up_html = caption_html + ("\n\n" + follow_up_html if follow_up_html else "")
            caption_html = ""
        markup_on_photo = reply_markup if not follow_up_html else None
        result = await self._call(
            chat_id,
            lambda html_mode=True: self.bot.send_photo(
                self.target(chat_id),
                InputFile(png, filename=filename),
                caption=(caption_html if html_mode else strip_html(caption_html)) or None,
                parse_mode=ParseMode.HTML if html_mode else None,
                reply_markup=markup_on_photo,
            ),
        )
        if not result.settled or not follow_up_html:
            return result
        more = await self.text(chat_id, follow_up_html, reply_markup=reply_markup)
        delivery = Delivery.UNCERTAIN if more.ok and result.delivery is Delivery.UNCERTAIN else more.delivery
        return SendResult(delivery, result.message_ids + more.message_ids, more.reason)

    async def edit(
        self, chat_id: int, message_id: int, text_html: str, *, reply_markup: InlineKeyboardMarkup | None = None
    ) -> SendResult:
        """Replace a message's text (settings panels); text longer than one message is truncated with a note."""
        chunks = split_html(text_html) or ["(empty)"]
        body = chunks[0] + ("\n…" if len(chunks) > 1 else "")
        try:
            return await self._call(
                chat_id,
                lambda html_mode=True: self.bot.edit_message_text(
                    body if html_mode else strip_html(body),
                    chat_id=self.target(chat_id),
                    message_id=message_id,
                    parse_mode=ParseMode.HTML if html_mode else None,
                    reply_markup=reply_markup,
                ),
            )
        except AttributeError:  # edit_message_text returns True for inline messages: no message id
            return SendResult(Delivery.SENT)

    async def action(self, chat_id: int, action: str) -> None:
        """Show a chat action ("typing", "sending a photo") while work runs; best effort, never raises."""
        try:
            await self.bot.send_chat_action(chat_id, action)
        except Exception as exc:
            logger.debug("chat action for %s failed: %s", chat_id, exc)

    async def document(self, chat_id: int, data: bytes, filename: str, caption_html: str = "") -> SendResult:
        return await self._call(
            chat_id,
            lambda html_mode=True: self.bot.send_document(
                self.target(chat_id),
                InputFile(data, filename=filename),
                caption=(caption_html if html_mode else strip_html(caption_html))[:CAPTION_LIMIT] or None,
                parse_mode=ParseMode.HTML if html_mode else None,
            ),
        )

    async def _call(self, chat_id: int, make: Callable[..., Awaitable[Message]]) -> SendResult:
        """Run one API call with retries; ``make(html_mode=False)`` is the plain-text fallback."""
        html_mode = True
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                message = await make(html_mode=html_mode)
                return SendResult(Delivery.SENT, (message.message_id,))
            except RetryAfter as exc:
                wait = retry_after_seconds(exc)
                logger.warning("flood control for chat %s: waiting %.1fs (attempt %d)", chat_id, wait, attempt)
                await self._sleep(wait)
            except ChatMigrated as exc:  # the group is now a supergroup with a new id: send there
                new_id = int(exc.new_chat_id)
                logger.info("chat %s became supergroup %s; sending there from now on", chat_id, new_id)
                self._moved[chat_id] = new_id
                if self.on_migrated is not None:
                    await self.on_migrated(chat_id, new_id)
            except Forbidden as exc:
                logger.info("chat %s cannot be reached (%s); unsubscribing", chat_id, exc.message)
                if self.on_blocked is not None:
                    await self.on_blocked(chat_id)
                return SendResult(Delivery.BLOCKED, reason=exc.message)
            except BadRequest as exc:
                text = exc.message.lower()
                if html_mode and "parse entities" in text:
                    logger.warning("Telegram rejected HTML for chat %s (%s); sending plain text", chat_id, exc.message)
                    html_mode = False
                    continue
                if "message is not modified" in text:  # an edit to the same content: nothing to do
                    return SendResult(Delivery.SENT)
                if "chat not found" in text or "user not found" in text:
                    if self.on_blocked is not None:
                        await self.on_blocked(chat_id)
                    return SendResult(Delivery.BLOCKED, reason=exc.message)
                logger.error("Telegram refused a message to chat %s: %s", chat_id, exc.message)
                return SendResult(Delivery.FAILED, reason=exc.message)
            except TimedOut as exc:
                if maybe_delivered(exc):
                    logger.warning(
                        "sending to chat %s timed out after the request went out: maybe delivered, not resent", chat_id
                    )
                    return SendResult(Delivery.UNCERTAIN, reason=f"timed out: {exc}")
                if attempt == MAX_ATTEMPTS:
                    return SendResult(Delivery.DEFERRED, reason=str(exc))
                logger.warning("timed out connecting to Telegram for chat %s (%s); retrying", chat_id, exc)
                await self._sleep(min(2.0**attempt, 30.0))
            except NetworkError as exc:  # connection refused/reset, 502: retried (the concern is timeouts)
                if attempt == MAX_ATTEMPTS:
                    return SendResult(Delivery.DEFERRED, reason=str(exc))
                logger.warning("network error sending to chat %s (%s); retrying", chat_id, exc)
                await self._sleep(min(2.0**attempt, 30.0))
        return SendResult(Delivery.DEFERRED, reason=f"flood control outlasted {MAX_ATTEMPTS} attempts")
