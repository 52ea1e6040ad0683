"""Duplicate suppression of sent signals, persisted in ``sent_signals_cache.json``.

Definition: a signal is a **duplicate** of a cached one when both have the same symbol, timeframe and direction,
the cached entry has not expired, and their entries are the same zone: the entry zones overlap, or the reference
entries differ by at most ``ZONE_TOLERANCE_RISK`` (0.5) times the cached signal's risk |entry - SL| (the stop
distance is ATR-based, so this tolerance is volatility-relative), or by at most ``ZONE_TOLERANCE_PCT`` (0.1%) of
the price. Price-scale invariant: no absolute prices.

TTL: ``TTL_CANDLES`` (6) candles of the signal's timeframe from the time the signal was sent (6 h on 1h, 24 h on
4h). A setup re-found in the same zone within that window is not sent again, also after a restart.

File format (UTF-8 JSON, atomic writes via :mod:`storage`)::

    {"version": 1, "entries": [{"key": "BTCUSDT|1h|long", "signal_id": "...", "entry": 100.0,
                                "entry_low": 99.0, "entry_high": 101.0, "risk": 5.0,
                                "sent_at": "2025-...Z", "expires_at": "2025-...Z"}, ...]}
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.signal_model import Signal, iso_utc
from market.timeframes import interval_timedelta
from store.storage import atomic_write_json, load_json

logger = logging.getLogger(__name__)

TTL_CANDLES = 6
ZONE_TOLERANCE_RISK = 0.5
ZONE_TOLERANCE_PCT = 0.1
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class CacheEntry:
    key: str  # "SYMBOL|timeframe|direction"
    signal_id: str
    entry: float
    entry_low: float
    entry_high: float
    risk: float
    sent_at: str  # ISO UTC
    expires_at: str  # ISO UTC

    @property
    def expires(self) -> datetime:
        return _parse(self.expires_at)


def cache_key(signal: Signal) -> str:
    return f"{signal.symbol}|{signal.timeframe}|{signal.direction.value}"


def ttl_for(timeframe: str, candles: int = TTL_CANDLES) -> timedelta:
    delta = interval_timedelta(timeframe)
    return candles * (delta if isinstance(delta, timedelta) else timedelta(days=30))


def same_zone(entry: CacheEntry, signal: Signal) -> bool:
    """The zone test of the module docstring."""
    if signal.entry_low <= entry.entry_high and entry.entry_low <= signal.entry_high:
        return True
    tolerance = max(ZONE_TOLERANCE_RISK * entry.risk, ZONE_TOLERANCE_PCT / 100 * entry.entry)
    return abs(signal.entry - entry.entry) <= tolerance


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _validate(data: Any) -> list[CacheEntry]:
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ValueError("expected an object with an 'entries' list")
    out = [CacheEntry(**e) for e in data["entries"]]
    for e in out:
        e.expires  # noqa: B018 - validates the time
    return out


class SignalCache:
    """The duplicate cache. Thread-safe; every change is on disk before the call returns."""

    def __init__(self, path: str | Path, *, clock: Any = None, ttl_candles: int = TTL_CANDLES) -> None:
        self.path = Path(path)
        self.ttl_candles = ttl_candles
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._entries: list[CacheEntry] = load_json(self.path, default=list, validate=_validate).data

    def __len__(self) -> int:
        return len(self._entries)

    def _now(self, now: datetime | None) -> datetime:
        return (now or self._clock()).astimezone(UTC)

    def find(self, signal: Signal, now: datetime | None = None) -> CacheEntry | None:
        """The live cached entry ``signal`` duplicates, or None."""
        moment = self._now(now)
        key = cache_key(signal)
        with self._lock:
            for e in self._entries:
                if e.key == key and e.expires > moment and same_zone(e, signal):
                    return e
        return None

    def is_duplicate(self, signal: Signal, now: datetime | None = None) -> bool:
        return self.find(signal, now) is not None

    def add(self, signal: Signal, now: datetime | None = None) -> CacheEntry:
        """Remember ``signal`` as sent at ``now`` (expires after the TTL)."""
        moment = self._now(now)
        entry = CacheEntry(
            key=cache_key(signal),
            signal_id=signal.id,
            entry=signal.entry,
            entry_low=signal.entry_low,
            entry_high=signal.entry_high,
            risk=signal.risk,
            sent_at=iso_utc(moment),
            expires_at=iso_utc(moment + ttl_for(signal.timeframe, self.ttl_candles)),
        )
        with self._lock:
            self._entries.append(entry)
            self._save()
        return entry

    def check_and_add(self, signal: Signal, now: datetime | None = None) -> bool:
        """Atomically: True and remembered when new, False when a duplicate."""
        with self._lock:
            if self.is_duplicate(signal, now):
                return False
            self.add(signal, now)
            return True

    def cleanup(self, now: datetime | None = None) -> int:
        """Drop expired entries (the scheduled cache-cleanup job); returns how many were removed."""
        moment = self._now(now)
        with self._lock:
            keep = [e for e in self._entries if e.expires > moment]
            removed = len(self._entries) - len(keep)
            if removed:
                self._entries = keep
                self._save()
        if removed:
            logger.info("signal cache: %d expired entries removed", removed)
        return removed

    def _save(self) -> None:
        atomic_write_json(self.path, {"version": FORMAT_VERSION, "entries": [asdict(e) for e in self._entries]})

    def close(self) -> None:
        """Nothing is buffered; present for the services' uniform close."""
