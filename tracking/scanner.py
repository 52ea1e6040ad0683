"""The scheduled scan (watchlist x timeframes) and the one way a signal becomes tracked and broadcast.

:func:`run_scan`: one scan at a time (a process-wide lock; a call while one runs returns ``status="skipped"``, so
missed or overlapping runs coalesce); ``paused`` in the store skips it unless ``forced``. Each (symbol, timeframe)
is analysed in turn, in the scan's thread, through ``ict_signal_engine.analyze``; its klines requests (entry and
higher timeframes) are fetched ahead by ``concurrency`` threads (``market.prefetch``, default 6 in flight; 1 is
serial) within Binance's request-weight budget (the client pauses every thread at 80% of 6,000 per minute); the
results equal the serial scan's. A failure is logged and that pair skipped. A signal is broadcast and tracked when
the gate passes it (``gate``: a :class:`tracking.gate.Verdict` per signal; the bot passes its ``GATE`` with the
loaded evidence, the default here is the rule-score threshold ``MIN_CONFIDENCE``) and it is not a duplicate
(:mod:`signal_cache`); each subscriber receives it only when their broadcasts are on and the rule score reaches their
own minimum (``/settings``; ``default_floor`` when they set none).

:func:`track_signal` (scan and on-request ``/signal`` above the threshold): in ONE SQLite transaction the position
is stored and the broadcast messages (text + chart) are put in the outbox, then the journal record is written and
the duplicate key remembered. A kill between the steps loses nothing acknowledged: the outbox is drained by the
Telegram side; a missing journal record is recreated from ``positions.db`` when the position closes.
"""

from __future__ import annotations

import functools
import html
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

import ict_signal_engine
from engine.prices import format_price
from engine.signal_model import Signal
from market.prefetch import FETCH_WORKERS, FrameKey, PrefetchingMarket
from position_manager import OutboxKind, PositionStore
from store.evidence import Evidence
from store.storage import LoadStatus
from tracking.costs import DEFAULT_EXIT_PLAN, Costs
from tracking.gate import Gate, Verdict, verdict
from tracking.state import Position

logger = logging.getLogger(__name__)

_SCAN_LOCK = threading.Lock()  # one scan at a time in this process
NO_EVIDENCE = Evidence(None, {}, LoadStatus.MISSING)
GateFn = Callable[[Signal], Verdict]


@dataclass(frozen=True, slots=True)
class TrackResult:
    position: Position | None  # None when the signal was a duplicate
    new: bool  # False: duplicate, or already tracked
    enqueued: int  # outbox messages added


@dataclass(frozen=True, slots=True)
class ScanReport:
    status: str  # "done", "skipped" (another scan running) or "paused"
    started_at: datetime
    finished_at: datetime
    pairs: int = 0  # (symbol, timeframe) analysed
    signals: int = 0  # Signal results
    below_threshold: int = 0  # not passed by the gate
    duplicates: int = 0
    tracked: int = 0
    broadcasts: int = 0  # outbox messages enqueued
    errors: tuple[str, ...] = ()

    def summary(self) -> str:
        if self.status != "done":
            return {"skipped": "A scan is already running.", "paused": "Scheduled signals are paused."}[self.status]
        seconds = (self.finished_at - self.started_at).total_seconds()
        text = (
            f"Scan done in {seconds:.1f}s: {self.pairs} pairs, {self.signals} signals, {self.tracked} new "
            f"({self.duplicates} duplicates, {self.below_threshold} not passed by the gate), {self.broadcasts} messages"
        )
        return text + (f", {len(self.errors)} failed" if self.errors else "")


def broadcast_channel(settings: Any) -> list[int]:
    """``BROADCAST_CHANNEL_ID`` as a recipient (every broadcast signal and its alerts; chat.channel), or none."""
    channel = getattr(settings, "broadcast_channel_id", None)
    return [int(channel)] if channel else []


def recipients_for(store: PositionStore, signal: Signal, default_min_confidence: float) -> list[int]:
    """Subscribers whose broadcasts are on and whose minimum confidence the signal reaches."""
    out = []
    for chat in store.subscribers():
        prefs = store.get_user_settings(chat)
        floor = prefs.min_confidence if prefs.min_confidence is not None else default_min_confidence
        if prefs.broadcasts and signal.confidence >= floor:
            out.append(chat)
    return out


def track_signal(
    store: Any,
    cache: Any = None,
    journal: Any = None,
    signal: Signal | None = None,
    chat_ids: Iterable[int] = (),
    *,
    html_text: str | Callable[[int], str] | None = None,
    photo: bytes | None = None,
    notify: bool = True,
    now: datetime | None = None,
    settings: Any = None,
) -> TrackResult:
    """Track ``signal`` for ``chat_ids`` (the recipients of its alerts) unless it is a duplicate.

    With ``notify`` the signal message (``html_text``, or ``html_text(position_id)`` so it can name the position;
    default a plain summary, plus ``photo``) is enqueued for each chat; on-request ``/signal`` passes
    ``notify=False`` (the requester already has it). Also callable as ``track_signal(services, signal, analysis)``
    with the bot's services container: the requester-less form used by the Telegram handlers (tracks for the
    broadcast recipients, enqueues to them). ``settings``: the position follows its ``EXIT_PLAN`` and is charged its
    ``FEE_PCT`` / ``SLIPPAGE_PCT`` (default: the defaults).
    """
    if _is_services(store):
        return _track_from_services(store, cache, journal)
    assert signal is not None
    moment = now or datetime.now(UTC)
    if cache is not None and cache.is_duplicate(signal, moment):
        return TrackResult(None, False, 0)
    chats = list(dict.fromkeys(int(c) for c in chat_ids))
    enqueued = 0
    with store.transaction():
        existing = store.get_by_signal(signal.id)
        if existing is not None:
            return TrackResult(existing, False, 0)
        plan = getattr(settings, "exit_plan", DEFAULT_EXIT_PLAN)
        costs = Costs.from_settings(settings) if settings is not None else None
        new = Position.from_signal(signal, recipients=chats, start=moment, exit_plan=plan, costs=costs)
        position = store.add(new, signal=signal)
        text = html_text(position.id) if callable(html_text) else html_text or plain_signal_html(signal)
        if notify:
            for chat in chats:
                key = f"signal:{signal.id}:{chat}"
                if store.enqueue(chat, text, photo, kind=OutboxKind.BROADCAST, dedupe_key=key):
                    enqueued += 1
    if journal is not None:
        journal.record_signal(signal, position_id=position.id, at=moment)
    if cache is not None:
        cache.add(signal, moment)
    logger.info("tracking %s as #%d for %d chats", signal.id, position.id, len(chats))
    return TrackResult(position, True, enqueued)


def plain_signal_html(signal: Signal) -> str:
    """A minimal signal message, used when the engine's formatter is unavailable."""
    return (
        f"<b>{html.escape(signal.symbol)} {html.escape(signal.timeframe)} {signal.direction.value.upper()}</b> "
        f"\nEntry {format_price(signal.entry)} · SL {format_price(signal.sl)} · "
        f"TP {format_price(signal.tp1)} / {format_price(signal.tp2)} / {format_price(signal.tp3)}"
    )


def _default_analyze(settings: Any, cache: Any = None) -> Callable[..., Any]:
    config = ict_signal_engine.EngineConfig.from_settings(settings) if settings is not None else None

    def analyze(market: Any, symbol: str, timeframe: str, *, predictor: Any = None) -> Any:
        return ict_signal_engine.analyze(market, symbol, timeframe, config=config, predictor=predictor, cache=cache)

    return analyze


def _render(analysis: Any, render_chart: Callable[[Any], bytes] | None, tz: str = "UTC") -> bytes | None:
    try:
        if render_chart is None:
            from chat import charts

            return charts.render_signal_chart(analysis, tz=tz)
        return render_chart(analysis)
    except Exception:
        logger.exception("chart rendering failed; broadcasting the text only")
        return None


def _format(
    signal: Signal, tz: str, format_html: Callable[..., str] | None, v: Verdict, price: float | None
) -> Callable[[int], str]:
    """The message for the position once it has a number ("tracking as #12")."""

    def text(position_id: int) -> str:
        try:
            if format_html is not None:
                return format_html(signal, tz)
            from chat import formatting

            line = formatting.tracking_line(v, position_id)
            return formatting.format_signal_html(signal, tz, verdict=v, tracking=line, price=price)
        except Exception:
            logger.exception("signal formatting failed; using the plain format")
            return plain_signal_html(signal)

    return text


def confidence_gate(settings: Any) -> GateFn:
    """The rule-score threshold (``GATE=confidence``), for callers without the bot's evidence."""
    floor = float(getattr(settings, "min_confidence", 60.0))
    return lambda signal: verdict(signal, gate=Gate.CONFIDENCE, evidence=NO_EVIDENCE, min_confidence=floor)


def current_price(market: Any, signal: Signal) -> float | None:
    """The live price for the message ("entry 0.4% below"); None (not shown) when the source cannot say."""
    try:
        return float(market.price(signal.symbol))
    except Exception as exc:
        logger.info("no current price for %s: %s", signal.symbol, exc)
        return None


def run_scan(
    market: Any,
    store: Any = None,
    cache: Any = None,
    journal: Any = None,
    settings: Any = None,
    *,
    analyze: Callable[..., Any] | None = None,
    predictor: Any = None,
    now: datetime | None = None,
    symbols: Sequence[str] | None = None,
    timeframes: Sequence[str] | None = None,
    forced: bool = False,
    render_chart: Callable[[Any], bytes] | None = None,
    format_html: Callable[..., str] | None = None,
    concurrency: int | None = None,
    gate: GateFn | None = None,
    default_floor: float | None = None,
    analyses: Any = None,
) -> ScanReport:
    """Scan ``symbols`` (default the watchlist) x ``timeframes`` (default AUTO_SIGNAL_TIMEFRAMES) once.

    ``concurrency``: klines requests in flight (default ``FETCH_WORKERS`` with the engine's analysis, 1 with an
    injected ``analyze``, whose requests the scan cannot plan). ``gate``: the verdict per signal (default
    :func:`confidence_gate`); ``default_floor``: the rule-score minimum of subscribers without one (default
    ``MIN_CONFIDENCE``). ``analyses``: an ``engine.analysis_cache.AnalysisCache`` (pairs whose candles were
    analysed already are not analysed again). Also callable as ``run_scan(services, symbols, timeframes)`` with the
    bot's services container, which passes its gate (``Services.verdict``), floor and analysis cache.
    """
    if _is_services(market):
        svc = market
        return run_scan(
            svc.market,
            svc.store,
            svc.cache,
            svc.journal,
            svc.settings,
            predictor=svc.predictor,
            symbols=store,
            timeframes=cache,
            forced=True,  # the caller checked the pause state (the /scan command forces)
            gate=svc.verdict,
            default_floor=svc.default_floor,
            analyses=getattr(svc, "analyses", None),  # candles analysed by /signal or the last scan: not again
        )
    started = datetime.now(UTC)
    if not _SCAN_LOCK.acquire(blocking=False):
        logger.info("scan skipped: another scan is running")
        return ScanReport("skipped", started, started)
    try:
        if store.paused and not forced:
            return ScanReport("paused", started, datetime.now(UTC))
        pairs = [
            (symbol, tf)
            for symbol in symbols or settings.watchlist
            for tf in timeframes or settings.auto_signal_timeframes
        ]
        scan = functools.partial(
            _scan,
            store=store,
            cache=cache,
            journal=journal,
            settings=settings,
            pairs=pairs,
            analyze=analyze or _default_analyze(settings, analyses),
            predictor=predictor,
            now=now,
            render_chart=render_chart,
            format_html=format_html,
            started=started,
            gate=gate or confidence_gate(settings),
            default_floor=default_floor,
        )
        workers = concurrency or (FETCH_WORKERS if analyze is None else 1)
        if workers <= 1:
            return scan(market)
        with PrefetchingMarket(market, klines_plan(pairs), workers=workers) as ahead:
            return scan(ahead, step_done=ahead.done)
    finally:
        _SCAN_LOCK.release()


def klines_plan(pairs: Sequence[tuple[str, str]]) -> list[list[FrameKey]]:
    """The frames ``ict_signal_engine.analyze`` reads for each pair: the entry timeframe, then its higher ones."""
    return [[(s, tf), *((s, htf) for htf in ict_signal_engine.higher_timeframes(tf))] for s, tf in pairs]


def _scan(
    market: Any,
    *,
    store: PositionStore,
    cache: Any,
    journal: Any,
    settings: Any,
    pairs: Sequence[tuple[str, str]],
    analyze: Callable[..., Any],
    predictor: Any,
    now: datetime | None,
    render_chart: Callable[[Any], bytes] | None,
    format_html: Callable[..., str] | None,
    started: datetime,
    gate: GateFn,
    default_floor: float | None,
    step_done: Callable[[int], None] = lambda step: None,
) -> ScanReport:
    min_conf = float(getattr(settings, "min_confidence", 60.0)) if default_floor is None else default_floor
    tz = getattr(settings, "bot_timezone", "UTC")
    counts = dict(pairs=0, signals=0, below_threshold=0, duplicates=0, tracked=0, broadcasts=0)
    errors: list[str] = []
    for step, (symbol, tf) in enumerate(pairs):
        try:
            analysis = analyze(market, symbol, tf, predictor=predictor)
        except Exception as exc:
            logger.warning("scan: %s %s failed: %s", symbol, tf, exc)
            errors.append(f"{symbol} {tf}: {exc}")
            continue
        finally:
            step_done(step)
        counts["pairs"] += 1
        signal = getattr(analysis, "result", analysis)
        if not isinstance(signal, Signal):
            continue
        counts["signals"] += 1
        v = gate(signal)
        if not v.broadcast:
            logger.info("scan: %s not broadcast: %s", signal.id, v.reason)
            counts["below_threshold"] += 1
            continue
        moment = now or _market_now(market)
        if cache is not None and cache.is_duplicate(signal, moment):
            counts["duplicates"] += 1
            continue
        chats = recipients_for(store, signal, min_conf) + broadcast_channel(settings)
        text = _format(signal, tz, format_html, v, current_price(market, signal) if chats else None)
        photo = _render(analysis, render_chart, tz) if chats and analysis is not signal else None
        result = track_signal(
            store, cache, journal, signal, chats, html_text=text, photo=photo, now=moment, settings=settings
        )
        if result.new:
            counts["tracked"] += 1
            counts["broadcasts"] += result.enqueued
        else:
            counts["duplicates"] += 1
    finished = datetime.now(UTC)
    store.set_state("last_scan", finished.strftime("%Y-%m-%dT%H:%M:%SZ"))
    report = ScanReport("done", started, finished, errors=tuple(errors), **counts)
    logger.info("%s", report.summary())
    return report


def _market_now(market: Any) -> datetime:
    try:
        return pd.Timestamp(market.now()).to_pydatetime()
    except Exception:
        return datetime.now(UTC)


def _is_services(obj: Any) -> bool:
    return hasattr(obj, "require") and hasattr(obj, "settings") and hasattr(obj, "store") and hasattr(obj, "cache")


def _track_from_services(svc: Any, signal: Signal, analysis: Any) -> TrackResult:
    """A requested signal the gate passes, from the Telegram layer: broadcast to the eligible subscribers."""
    v = svc.verdict(signal)
    if not v.broadcast:
        return TrackResult(None, False, 0)
    chats = recipients_for(svc.store, signal, svc.default_floor) + broadcast_channel(svc.settings)
    photo = _render(analysis, None, svc.settings.bot_timezone) if chats and analysis is not None else None
    price = current_price(svc.market, signal) if svc.market is not None else None
    text = _format(signal, svc.settings.bot_timezone, None, v, price)
    moment = _market_now(svc.market) if svc.market is not None else datetime.now(UTC)
    return track_signal(
        svc.store, svc.cache, svc.journal, signal, chats, html_text=text, photo=photo, now=moment, settings=svc.settings
    )
