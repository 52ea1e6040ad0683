"""The services the Telegram layer talks to, in one typed container.

Built once in the application's ``post_init`` (:func:`build_services`), closed in ``post_shutdown``
(:meth:`Services.close`) and reached from handlers through :func:`get_services` on ``context.bot_data``.

Services are built from their modules when those modules exist; a module that is missing (not shipped in this
version) or fails to start leaves its slot ``None`` and its commands answer plainly that the feature is not
available, with the reason logged once. :meth:`Services.require` is how a handler asks for one.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from config import Settings

logger = logging.getLogger(__name__)

SERVICES_KEY = "services"


class NotAvailable(Exception):
    """A feature whose service is missing or failed to start; ``str(exc)`` is the one line shown to the user."""


def optional_module(name: str) -> ModuleType | None:
    """Import ``name`` if that module exists in this checkout, else None (errors inside it still raise)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


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
    """Everything the handlers and jobs use. Optional slots are None when the feature is not available."""

    settings: Settings
    mode: str  # "telegram" or "console"
    market: Any | None = None  # market_data.MarketData
    engine_config: Any | None = None  # ict_signal_engine.EngineConfig
    store: Any | None = None  # position_manager.PositionStore
    journal: Any | None = None  # journal.Journal
    cache: Any | None = None  # signal_cache.SignalCache
    predictor: Any | None = None  # ml_predictor.MLPredictor
    sender: Any | None = None  # sender.Sender, set once the bot exists
    problems: dict[str, str] = field(default_factory=dict)  # service name -> why it is unavailable
    notices: list[str] = field(default_factory=list)  # one-line notices for the operator (console fallback)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(5, 60))
    recent: RecentResults = field(default_factory=RecentResults)
    scan_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    outbox_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    monitor_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    train_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # CPU-heavy work (analysis, charts) admitted at once: more threads than cores only compete for the GIL and
    # starve the event loop; queued requests wait here cheaply
    cpu_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(max(2, os.cpu_count() or 2)))
    last_scan: datetime | None = None
    last_monitor: datetime | None = None

    @property
    def data_dir(self) -> Path:
        return self.settings.bot_data_dir

    def require(self, name: str) -> Any:
        """Return the service ``name`` or raise NotAvailable with a one-line reason."""
        value = getattr(self, name)
        if value is None:
            label = _LABELS.get(name, name)
            reason = self.problems.get(name)
            raise NotAvailable(f"{label} is not available yet" + (f" ({reason})." if reason else " in this version."))
        return value

    async def cpu(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run blocking CPU-heavy ``func`` in a worker thread, at most ``cpu_slots`` at a time."""
        async with self.cpu_slots:
            return await asyncio.to_thread(func, *args, **kwargs)

    def module(self, name: str, feature: str) -> ModuleType:
        """Return the module ``name`` or raise NotAvailable naming ``feature``."""
        module = optional_module(name)
        if module is None:
            raise NotAvailable(f"{feature} is not available yet in this version.")
        return module

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
    "engine_config": "The analysis engine",
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


def build_services(settings: Settings, *, mode: str, market: Any | None = None) -> Services:
    """Create every available service; a failing one is logged and left None (never stops the bot).

    ``market`` may be given (console fallback, tests); otherwise ``market_data.create_market_data(settings)``.
    The ML model is loaded here: call this in a worker thread (``asyncio.to_thread``), not on the event loop.
    """
    settings.bot_data_dir.mkdir(parents=True, exist_ok=True)
    services = Services(settings=settings, mode=mode, limiter=RateLimiter(*settings.signal_rate_limit))
    data = settings.bot_data_dir

    def attempt(name: str, module_name: str, build: Callable[[ModuleType], Any]) -> None:
        module = optional_module(module_name)
        if module is None:
            services.problems[name] = f"{module_name}.py is not part of this version"
            logger.info("%s: not available (%s missing)", name, module_name)
            return
        try:
            setattr(services, name, build(module))
        except Exception as exc:
            services.problems[name] = f"failed to start: {exc}"
            logger.error("%s failed to start: %s", name, exc)
            logger.debug("%s start-up traceback", name, exc_info=True)

    if market is not None:
        services.market = market
    else:
        attempt("market", "market.factory", lambda m: m.create_market_data(settings))
    attempt("engine_config", "ict_signal_engine", lambda m: m.EngineConfig.from_settings(settings))
    attempt("store", "position_manager", lambda m: m.PositionStore(data / "positions.db"))
    attempt("journal", "store.journal", lambda m: m.Journal(data))
    attempt("cache", "signal_cache", lambda m: m.SignalCache(data / "sent_signals_cache.json"))

    def load_predictor(m: ModuleType) -> Any:
        predictor = m.MLPredictor(data)
        predictor.load()
        return predictor

    attempt("predictor", "ml_predictor", load_predictor)
    return services
