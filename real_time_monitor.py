"""The position monitor job: follows every open or pending position on the finest candles since its last check.

Each tick (:func:`monitor_tick`, sync: the job runs it in a worker thread):

1. The active positions are grouped by symbol; for each symbol the candles opening at or after the oldest
   ``last_checked`` are read ONCE through ``market.klines(symbol, market.finest_interval(symbol, since),
   start=since, limit=None, end=now)``: 1m on Binance; a source without 1m data there (the bundled sample) gives its
   finest interval, which is logged once per symbol and interval (remembered in the store's state).
   Because whole candles are read, a wick between two checks is never missed.
2. Each position walks those candles in order through the pure ``position_manager.apply_candle``.
3. In ONE SQLite transaction per tick (a savepoint per position, so one bad row cannot block the others): each
   new state is saved, each event is recorded in ``milestones_sent`` (so it happens once per position, also across
   restarts) and, the first time only, its message is put in the outbox for every recipient. A kill at any moment
   either loses the whole tick (it is redone next tick from the same candles) or none of it.
4. Closed positions' outcomes go to the journal and stats (:func:`sync_journal`; a flag in ``positions.db`` makes it
   exactly-once even when the process dies between the commit and the journal write).

The 80% milestone asks ``ict_80_alert_handler`` for a recommendation (outside the transaction; a failure still sends
the milestone, saying the analysis was unavailable).
"""

from __future__ import annotations

import contextlib
import html
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from engine.prices import format_price
from market.timeframes import interval_timedelta
from position_manager import OutboxKind, PositionStore
from tracking.state import EventKind, Position, PositionEvent, PositionState, apply_candle

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MonitorReport:
    positions: int  # active positions at the start of the tick
    symbols: int
    candles: int  # candles read (per symbol, summed)
    events: int  # new events (each counted once)
    enqueued: int  # outbox messages added
    closed: int
    journaled: int
    errors: tuple[str, ...] = ()


Evaluator = Callable[[Position], Any]  # position -> ict_80_alert_handler.Recommendation


def monitor_tick(
    store: PositionStore,
    market: Any = None,
    journal: Any | None = None,
    *,
    now: datetime | None = None,
    settings: Any = None,
    evaluate_80: Evaluator | None = None,
) -> MonitorReport:
    """One monitor pass (see the module docstring). ``evaluate_80`` defaults to the engine-backed handler.

    Also callable as ``monitor_tick(services)`` with the bot's services container.
    """
    if hasattr(store, "require") and hasattr(store, "settings"):  # the Telegram layer's services container
        svc = store
        return monitor_tick(svc.store, svc.market, svc.journal, settings=svc.settings)
    moment = _utc(now) if now is not None else _utc(market.now())
    tz = getattr(settings, "bot_timezone", "UTC")
    if evaluate_80 is None:

        def evaluate_80(position: Position) -> Any:
            import ict_signal_engine
            from ict_80_alert_handler import recommend_for

            config = ict_signal_engine.EngineConfig.from_settings(settings) if settings is not None else None
            return recommend_for(position, market, end=pd.Timestamp(moment), config=config)

    active = store.list_open()
    by_symbol: dict[str, list[Position]] = defaultdict(list)
    for p in active:
        by_symbol[p.symbol].append(p)
    errors: list[str] = []
    plans: list[_Plan] = []
    candles_read = events_n = enqueued = closed = 0
    for symbol, positions in by_symbol.items():
        since = min(p.last_checked for p in positions)
        try:
            interval = market.finest_interval(symbol, pd.Timestamp(since))
            _log_coarse_once(store, symbol, interval)
            frame = market.klines(symbol, interval, start=pd.Timestamp(since), end=pd.Timestamp(moment), limit=None)
        except Exception as exc:  # a symbol that fails is retried next tick; the others go on
            logger.warning("monitor: %s candles unavailable: %s", symbol, exc)
            errors.append(f"{symbol}: {exc}")
            continue
        candles_read += len(frame)
        if frame.empty:
            continue
        arrays = _arrays(frame, interval)
        for position in positions:
            try:
                new, events = walk_candles(position, *arrays)
                if new != position:
                    plans.append(_plan(store, new, events, evaluate_80, tz))
            except Exception as exc:
                logger.exception("monitor: position %s failed", position.id)
                errors.append(f"#{position.id}: {exc}")
    # one transaction for the tick (one fsync); a savepoint per position keeps one bad row from blocking the rest
    with store.transaction():
        for plan in plans:
            try:
                with store.savepoint():
                    e, q = _apply(store, plan)
            except Exception as exc:
                logger.exception("monitor: saving position %s failed", plan.position.id)
                errors.append(f"#{plan.position.id}: {exc}")
                continue
            events_n += e
            enqueued += q
            closed += int(plan.position.state.is_closed)
    journaled = sync_journal(store, journal) if journal is not None else 0
    store.set_state("last_monitor", moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return MonitorReport(
        len(active), len(by_symbol), candles_read, events_n, enqueued, closed, journaled, tuple(errors)
    )


def _arrays(frame: pd.DataFrame, interval: str) -> tuple[np.ndarray, ...]:
    index = frame.index.as_unit("ns")  # pandas may hold ms/us units; the walk compares nanoseconds
    opens_ns = index.asi8
    closes_ns = (index + interval_timedelta(interval)).as_unit("ns").asi8
    return (
        opens_ns,
        closes_ns,
        frame["open"].to_numpy(),
        frame["high"].to_numpy(),
        frame["low"].to_numpy(),
        frame["close"].to_numpy(),
    )


def walk_candles(
    position: Position,
    opens_ns: np.ndarray,
    closes_ns: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
) -> tuple[Position, list[PositionEvent]]:
    """Apply candles (open times as int ns since the epoch) in order from the position's ``last_checked``."""
    start = int(np.searchsorted(opens_ns, pd.Timestamp(position.last_checked).as_unit("ns").value, side="left"))
    events: list[PositionEvent] = []
    p = position
    for i in range(start, len(opens_ns)):
        ts = datetime.fromtimestamp(opens_ns[i] / 1e9, tz=UTC)
        ct = datetime.fromtimestamp(closes_ns[i] / 1e9, tz=UTC)
        p, ev = apply_candle(p, ts, float(o[i]), float(h[i]), float(lo[i]), float(c[i]), close_time=ct)
        events.extend(ev)
        if p.state.is_closed:
            break
    return p, events


def _log_coarse_once(store: PositionStore, symbol: str, interval: str) -> None:
    if interval == "1m":
        return
    key = f"monitor.coarse.{symbol}"
    if store.get_state(key) != interval:
        logger.warning(
            "monitor: no 1m candles for %s here; following positions on %s candles (a wick inside one is judged "
            "by the candle's high/low, stop first)",
            symbol,
            interval,
        )
        store.set_state(key, interval)


@dataclass(frozen=True, slots=True)
class _Plan:
    position: Position  # the new state
    events: tuple[PositionEvent, ...]  # first-time events, in order
    texts: tuple[str, ...]  # their messages
    kinds: tuple[OutboxKind, ...]  # RECOMMENDATION for an 80% analysis, else ALERT


def _plan(
    store: PositionStore, new: Position, events: Sequence[PositionEvent], evaluate_80: Evaluator | None, tz: str
) -> _Plan:
    """Messages for the events not yet sent (the slow 80% analysis runs here, outside any transaction)."""
    already = store.milestones_sent(new.id)
    fresh = tuple(e for e in events if e.key not in already)
    texts, kinds = [], []
    for e in fresh:
        text = None
        # advice only while it is still actionable: the position is open and that target not yet reached
        if (
            e.kind is EventKind.MILESTONE
            and e.percent == 80
            and evaluate_80 is not None
            and new.is_active
            and new.targets_hit + 1 == e.target
        ):
            text = _recommendation_text(new, e, evaluate_80)
        kinds.append(OutboxKind.RECOMMENDATION if text else OutboxKind.ALERT)
        texts.append(text or format_event_html(new, e, tz=tz))
    return _Plan(new, fresh, tuple(texts), tuple(kinds))


def _apply(store: PositionStore, plan: _Plan) -> tuple[int, int]:
    """Persist the state, record each event once and enqueue its messages (inside the caller's transaction)."""
    new = plan.position
    n_events = n_msgs = 0
    store.update(new)
    for e, text, kind in zip(plan.events, plan.texts, plan.kinds, strict=True):
        if not store.mark_milestone(new.id, e.key, e.at):
            continue
        n_events += 1
        if e.key == "TP3":  # the CLOSED message announces TP3
            continue
        for chat in new.recipients:
            if store.enqueue(chat, text, kind=kind, dedupe_key=f"pos:{new.id}:{e.key}:{chat}"):
                n_msgs += 1
    return n_events, n_msgs


def _recommendation_text(position: Position, event: PositionEvent, evaluate_80: Evaluator) -> str | None:
    from ict_80_alert_handler import format_recommendation_html

    try:
        rec = evaluate_80(position)
        if rec is None:  # no recommendation wanted: the plain milestone
            return None
        return format_recommendation_html(position, rec, percent=event.percent or 80, target=event.target)
    except Exception as exc:
        logger.warning("80%% handler failed for position %s: %s", position.id, exc)
        return format_event_html(position, event) + "\n<i>(analysis unavailable right now)</i>"


def sync_journal(store: PositionStore, journal: Any) -> int:
    """Record every closed, not yet journaled position's outcome in the journal (one write); returns how many.

    The positions are flagged ``journaled`` only after the journal write, so a kill in between repeats the
    (idempotent) recording on the next tick.
    """
    pending = store.unjournaled_closed()
    if not pending:
        return 0
    done: list[int] = []
    batch = journal.batch() if hasattr(journal, "batch") else contextlib.nullcontext()
    try:
        with batch:
            for p in pending:
                if p.outcome is not None:
                    journal.record_outcome(p.signal_id, p.outcome, signal_json=store.signal_json(p.id))
                done.append(p.id)
    except Exception:
        logger.exception("journal: outcomes not recorded (retried next tick)")
        return 0
    with store.transaction():
        for position_id in done:
            store.mark_journaled(position_id)
    return sum(1 for p in pending if p.outcome is not None)


def close_and_journal(store: PositionStore, journal: Any, position_id: int, price: float, at: datetime) -> Position:
    """``/close ID``: close by hand at ``price`` and journal the outcome; KeyError / ValueError as the store."""
    closed, _ = store.close_manual(position_id, price, at)
    if journal is not None:
        sync_journal(store, journal)
    return closed


# ---------------------------------------------------------------------------------------------------------------
# Messages (Telegram HTML; every dynamic string escaped)
# ---------------------------------------------------------------------------------------------------------------


def _p(value: float | None) -> str:
    """A price a trader may copy: tap-to-copy in Telegram (HTML ``<code>``)."""
    return f"<code>{format_price(value)}</code>"


def _title(p: Position) -> str:
    return f"<b>{html.escape(p.symbol)} {html.escape(p.timeframe)} {p.direction.value.upper()}</b> #{p.id}"


_CLOSE_TEXT = {
    PositionState.TP3: "🏁 TP3 hit: position closed",
    PositionState.TARGETS: "🏁 Last planned target hit: position closed",
    PositionState.SL: "🛑 Stopped out",
    PositionState.BE: "⚖️ Closed at break-even",
    PositionState.MANUAL: "✋ Closed manually",
    PositionState.EXPIRED: "⌛ Expired: the entry was not reached",
}


def format_event_html(p: Position, e: PositionEvent, *, tz: str = "UTC") -> str:
    """The alert for one event of position ``p`` (its state after the event's candle)."""
    if e.kind is EventKind.FILLED:
        return f"✅ {_title(p)}: entry filled at {_p(e.price)}\nSL {_p(p.original_sl)} · TP1 {_p(p.tp1)}"
    if e.kind is EventKind.MILESTONE:
        return (
            f"📈 {_title(p)}: {e.percent}% of the way to TP{e.target} ({_p(p.target(e.target))})\n"
            f"Price reached {_p(e.price)} ({p.r_at(e.price):+.2f}R)"
        )
    if e.kind is EventKind.STOP_WARNING:
        return (
            f"⚠️ {_title(p)}: price is {e.percent}% of the way to the stop ({_p(p.sl)})\n"
            f"Price reached {_p(e.price)} ({p.r_at(e.price):+.2f}R)"
        )
    if e.kind is EventKind.TARGET_HIT:
        extra = ""
        if e.share:  # the exit plan closes part of the position here
            extra += f"\nExit plan: {e.share:g}% of the position closed at TP{e.target}, {p.open_share:g}% still open."
        if e.target == 1 and p.is_active:
            extra += f"\nStop moved to break-even ({_p(p.fill_price)})."
        r = p.r_at(e.price) if p.fill_price is not None else 0.0
        return f"🎯 {_title(p)}: TP{e.target} hit at {_p(e.price)} ({r:+.2f}R){extra}"
    out = e.outcome
    head = f"{_CLOSE_TEXT.get(out.reason, 'Closed')} · {_title(p)}"
    if out.reason is PositionState.EXPIRED:
        return f"{head}\nLimit entry {_p(p.entry)} was not filled in time; the setup is void."
    text = f"{head}\nExit {_p(out.exit_price)} · {out.r_multiple:+.2f}R ({out.pnl_pct:+.2f}%)"
    if out.highest_target and out.reason not in (PositionState.TP3, PositionState.TARGETS):
        text += f" · reached TP{out.highest_target} before"
    if out.r_gross is not None:
        avg = f"average exit {_p(out.avg_exit_price)} · " if out.avg_exit_price != out.exit_price else ""
        text += f"\n{avg}net of fees and slippage; {out.r_gross:+.2f}R before costs"
    return text


def format_positions_html(positions: Sequence[Position], prices: Mapping[str, float]) -> str:
    """``/positions``: the active positions with live P&L at ``prices`` (symbol -> last price)."""
    if not positions:
        return "📂 <b>Open positions</b>\nNone right now."
    lines = [f"📂 <b>Open positions</b> ({len(positions)})"]
    for p in positions:
        price = prices.get(p.symbol)
        if p.state is PositionState.PENDING:
            live = f"pending, limit {_p(p.entry)}"
        elif price is None:
            live = f"{p.state.value}, price unavailable"
        else:
            live = f"{p.state.value}, {_p(price)} → {p.r_at(price):+.2f}R ({p.pnl_pct_at(price):+.2f}%)"
        lines.append(f"• {_title(p)}: {live} · SL {_p(p.sl)} · TP {_p(p.tp1)}/{_p(p.tp2)}/{_p(p.tp3)}")
    return "\n".join(lines)


def _utc(moment: Any) -> datetime:
    ts = pd.Timestamp(moment)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()
