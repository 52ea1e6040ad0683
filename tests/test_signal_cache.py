"""Duplicate suppression: zone matching, TTL, persistence across a restart, cleanup, corrupt file."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from engine.signal_model import TradeDirection
from signal_cache import TTL_CANDLES, SignalCache
from tests.test_positions import T0, make_signal


def shifted(signal, delta_pct: float):
    f = 1 + delta_pct / 100
    return dataclasses.replace(
        signal,
        entry=signal.entry * f,
        entry_low=signal.entry_low * f,
        entry_high=signal.entry_high * f,
        sl=signal.sl * f,
        tp1=signal.tp1 * f,
        tp2=signal.tp2 * f,
        tp3=signal.tp3 * f,
        id="",
    )


@pytest.mark.parametrize("scale", [1.0, 1e-5])
def test_duplicate_within_ttl_also_after_restart_then_expires(tmp_path, scale):
    path = tmp_path / "sent_signals_cache.json"
    cache = SignalCache(path)
    sig = make_signal(scale=scale)
    assert cache.check_and_add(sig, now=T0) is True
    assert cache.check_and_add(sig, now=T0 + timedelta(minutes=5)) is False
    restarted = SignalCache(path)
    later = T0 + timedelta(hours=TTL_CANDLES) - timedelta(minutes=1)
    assert restarted.is_duplicate(shifted(sig, 1.0), now=later)  # overlapping zone, 1% away
    assert not restarted.is_duplicate(sig, now=T0 + timedelta(hours=TTL_CANDLES))  # expired
    assert not restarted.is_duplicate(shifted(sig, 5.0), now=later)  # a different zone
    assert not restarted.is_duplicate(dataclasses.replace(make_signal(scale=scale), timeframe="4h", id=""), now=T0)
    short = make_signal(TradeDirection.SHORT, scale=scale)
    assert not restarted.is_duplicate(short, now=T0)


def test_cleanup_removes_only_expired_and_persists(tmp_path):
    path = tmp_path / "sent_signals_cache.json"
    cache = SignalCache(path)
    cache.add(make_signal(), now=T0)
    cache.add(make_signal(timeframe="4h"), now=T0)
    assert cache.cleanup(now=T0 + timedelta(hours=7)) == 1
    assert len(SignalCache(path)) == 1
    assert cache.cleanup(now=T0 + timedelta(hours=7)) == 0


def test_corrupt_cache_is_quarantined_and_started_empty(tmp_path):
    path = tmp_path / "sent_signals_cache.json"
    path.write_text('{"version": 1, "entries": [{"key": 1}]}')
    cache = SignalCache(path)
    assert len(cache) == 0
    assert list(tmp_path.glob("sent_signals_cache.json.corrupt-*"))
    assert cache.check_and_add(make_signal(), now=T0)
