"""The services the Telegram layer talks to, in one typed container.

Built once in the application's ``post_init`` (:func:`build_services`), closed in ``post_shutdown``
(:meth:`Services.close`) and reached from handlers through :func:`get_services` on ``context.bot_data``.

A service that can genuinely fail at start (market data construction, a locked ``positions.db``, the journal, the
signal cache file, the ML model file) leaves its slot ``None`` with the reason in ``problems``: ``/health`` shows
it and the commands that need it answer with that reason (:meth:`Services.require`). Everything else is always
there.

The out-of-sample evidence (``evidence.json``) is loaded at start into ``evidence`` and reloaded after a retrain
and when ``/health`` finds the file changed (:meth:`Services.refresh_evidence`); :meth:`Services.verdict` is the
gate's decision for a signal (``GATE``, :mod:`tracking.gate`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chat.sender import Sender
from config import Settings
from engine.analysis_cache import AnalysisCache
from engine.signal_model import Signal
from ict_signal_engine import EngineConfig
from market.factory import create_market_data
from market.source import MarketData
from ml_predictor import MLPredictor
from position_manager import PositionStore
from signal_cache import SignalCache
from store.evidence import EVIDENCE_FILE, Evidence, load_evidence
from store.journal import Journal
from store.storage import LoadStatus
from tracking.gate import Gate, Verdict, gate_status, verdict

logger = logging.getLogger(__name__)

SERVICES_KEY = "services"
ERROR_REPORT_PERIOD_SECONDS = 600.0  # one admin report per error kind per period (a click storm is one report)


class NotAvailable(Exception):
    """A feature whose service failed to start; ``str(exc)`` is the one line shown to the user."""


class RateLimiter:
    """Sliding-window limit of ``count`` events per ``seconds`` per key; ``clock`` is monotonic seconds."""

    def __init__(self, count: int, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.count = count
        self.seconds = seconds
        self._clock = clock
        self._events: dict[int, deque[float]] = {}

    def hit(self, key: int) -> float | None:
        """Record one event for ``key``; return None if allowed, else seconds until the next one is."""
        now = self._clock()
        window = self._events.setdefault(key, deque())
        while window and now - window[0] >= self.seconds:
            window.popleft()
        if len(window) >= self.count:
            return max(self.seconds - (now - window[0]), 0.1)
        window.append(now)
        return None


class ReportThrottle:
    """One admin error report per error kind per ``period`` seconds; repeats in between are counted, not sent."""

    def __init__(self, period: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def admit(self, kind: str) -> int | None:
        """None when a report of ``kind`` went out less than ``period`` ago (this one is counted); else the number
        of repeats suppressed since the last report of that kind."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.period:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._suppressed.pop(kind, 0)


class RecentResults:
    """A bounded map of recently shown analysis results, for the "details" button (LRU, in memory)."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Any] = OrderedDict()

    def put(self, key: str, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, key: str) -> Any | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value


@dataclass(slots=True)
class Services:
    """Everything the handlers and jobs use. A ``None`` slot is a service that failed to start (see ``problems``)."""

    settings: Settings
    mode: str  # "telegram" or "console"
    market: MarketData | None = None
    engine_config: EngineConfig = field(default_factory=EngineConfig)
    store: PositionStore | None = None
    journal: Journal | None = None
    cache: SignalCache | None = None
    predictor: MLPredictor | None = None
    sender: Sender | None = None  # set in post_init, once the bot exists
    problems: dict[str, str] = field(default_factory=dict)  # service name -> why it failed to start
    notices: list[str] = field(default_factory=list)  # one-line notices for the operator (console fallback)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(5, 60))
    recent: RecentResults = field(default_factory=RecentResults)
    analyses: AnalysisCache = field(default_factory=AnalysisCache)  # analyses and charts within the same candles
    error_reports: ReportThrottle = field(default_factory=lambda: ReportThrottle(ERROR_REPORT_PERIOD_SECONDS))
    scan_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    outbox_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    monitor_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    train_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # CPU-heavy work (analysis, charts) admitted at once: more threads than cores only compete for the GIL and
    # starve the event loop; queued requests wait here cheaply
    cpu_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(max(2, os.cpu_count() or 2)))
    last_scan: datetime | None = None
    last_monitor: datetime | None = None
    evidence: Evidence = field(default_factory=lambda: Evidence(None, {}, LoadStatus.MISSING))
    evidence_mtime: float | None = None  # of evidence.json when it was loaded; None: no file

    def verdict(self, signal: Signal) -> Verdict:
        """The gate's decision and the honest numbers for ``signal`` (GATE with the loaded evidence)."""
        return verdict(
            signal, gate=self.settings.gate, evidence=self.evidence, min_confidence=self.settings.min_confidence
        )

    @property
    def default_floor(self) -> float:
        """The rule-score minimum of subscribers who set none: MIN_CONFIDENCE under GATE=confidence; otherwise
        the gate alone decides (0)."""
        return float(self.settings.min_confidence) if self.settings.gate == Gate.CONFIDENCE else 0.0

    def gate_status(self) -> str:
        return gate_status(self.settings.gate, self.evidence)

    def refresh_evidence(self, *, force: bool = False) -> bool:
        """Reload ``evidence.json`` when it changed since it was loaded (or always with ``force``); blocking file
        I/O: call it in a thread. True when it was reloaded."""
        mtime = evidence_mtime(self.data_dir)
        if not force and mtime == self.evidence_mtime:
            return False
        self.evidence = load_evidence(self.data_dir)
        self.evidence_mtime = mtime
        logger.info("evidence loaded (%s): %s", self.evidence.status.value, self.gate_status())
        return True

    @property
    def data_dir(self) -> Path:
        return self.settings.bot_data_dir

    def require(self, name: str) -> Any:
        """Return the service ``name`` or raise NotAvailable with a one-line reason."""
        value = getattr(self, name)
        if value is None:
            label = _LABELS.get(name, name)
            reason = self.problems.get(name)
            raise NotAvailable(f"{label} is not available ({reason or 'not started'}).")
        return value

    async def cpu(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run blocking CPU-heavy ``func`` in a worker thread, at most ``cpu_slots`` at a time."""
        async with self.cpu_slots:
            return await asyncio.to_thread(func, *args, **kwargs)

    def close(self) -> None:
        """Close the services that hold files or connections; safe to call twice."""
        for name in ("store", "journal", "cache", "market"):
            service = getattr(self, name)
            closer = getattr(service, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:
                    logger.exception("closing %s failed", name)
            setattr(self, name, None)


_LABELS = {
    "market": "Market data",
    "store": "Position tracking",
    "journal": "The trading journal",
    "cache": "The signal cache",
    "predictor": "The ML model",
}


def get_services(context: Any) -> Services:
    """The typed accessor handlers and jobs use: ``get_services(context).market``."""
    services = context.bot_data.get(SERVICES_KEY)
    if not isinstance(services, Services):
        raise RuntimeError("services are not initialised (post_init has not run)")
    return services


def build_services(settings: Settings, *, mode: str, market: MarketData | None = None) -> Services:
    """Create the services; one that fails to start is logged and left None (never stops the bot).

    ``market`` may be given (console fallback, tests); otherwise ``market.factory.create_market_data(settings)``.
    The ML model is loaded here: call this in a worker thread (``asyncio.to_thread``), not on the event loop.
    """
    settings.bot_data_dir.mkdir(parents=True, exist_ok=True)
    services = Services(
        settings=settings,
        mode=mode,
        engine_config=EngineConfig.from_settings(settings),
        limiter=RateLimiter(*settings.signal_rate_limit),
    )
    data = settings.bot_data_dir

    def attempt(name: str, build: Callable[[], Any]) -> None:
        try:
            setattr(services, name, build())
        except Exception as exc:
            services.problems[name] = f"failed to start: {exc}"
            logger.error("%s failed to start: %s", name, exc)
            logger.debug("%s start-up traceback", name, exc_info=True)

    if market is not None:
        services.market = market
    else:
        attempt("market", lambda: create_market_data(settings))
    attempt("store", lambda: PositionStore(data / "positions.db"))
    attempt("journal", lambda: Journal(data))
    attempt("cache", lambda: SignalCache(data / "sent_signals_cache.json"))
    attempt("predictor", lambda: load_predictor(data))
    services.refresh_evidence(force=True)
    return services


def evidence_mtime(data: Path) -> float | None:
    try:
        return (data / EVIDENCE_FILE).stat().st_mtime
    except OSError:
        return None


def load_predictor(data: Path) -> MLPredictor:
    predictor = MLPredictor(data)
    predictor.load()
    return predictor
