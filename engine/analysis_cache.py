"""Analyses and charts that are never computed twice (issue 12 item 2).

An analysis depends only on the closed candles it reads, the engine config and the ML model. The candles are fixed
by the close time ``T`` of the entry timeframe's last closed candle (by the market clock, or ``end``): every
higher timeframe's window is cut to the candles closed by ``T`` (``engine.windows``), so its last close is
derived from ``T`` and its interval. Hence the key ``(symbol, timeframe, T, config, model version)``: a repeated
/signal, a refresh button or a scan within the same candles is answered with the same ``Analysis`` object, and
the first request after a candle closes computes a new one. The chart of an analysis is kept beside it (keyed by
the analysis object and the drawing options).

Here (engine/, importing no root module) rather than in ``ict_signal_engine``: the cache takes the computation
as a function, so the engine module only adds the lookup (``analyze(..., cache=)``) and stays small.
Bounded: ``maxsize`` analyses and ``charts`` PNGs, least recently used evicted. Thread-safe (``LRUCache``); two
threads missing the same key at once both compute, and either result is kept (they are equal).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Hashable
from typing import Any

import pandas as pd

from market.source import LRUCache, normalize_symbol, to_utc
from market.timeframes import candle_open_time

logger = logging.getLogger(__name__)

AnalysisKey = tuple[Hashable, ...]


class AnalysisCache:
    """Analyses by :func:`analysis_key`, their chart PNGs by (analysis, options); see the module docstring."""

    def __init__(self, maxsize: int = 256, charts: int = 64) -> None:
        self.analyses: LRUCache[AnalysisKey, Any] = LRUCache(maxsize)
        self.charts: LRUCache[tuple, tuple[Any, bytes]] = LRUCache(charts)

    def analysis(self, key: AnalysisKey, compute: Callable[[], Any], *, keep: Callable[[Any], bool]) -> Any:
        """The cached analysis for ``key``, else ``compute()`` (kept when ``keep(result)``; errors propagate)."""
        cached = self.analyses.get(key)
        if cached is not None:
            return cached
        result = compute()
        if keep(result):
            self.analyses.put(key, result)
        return result

    def chart(self, analysis: Any, render: Callable[..., bytes], **options: Any) -> bytes:
        """``render(analysis, **options)``, once per analysis object and options."""
        key = (id(analysis), getattr(render, "__qualname__", repr(render)), tuple(sorted(options.items())))
        cached = self.charts.get(key)
        if cached is not None and cached[0] is analysis:  # the entry holds the object: its id is not reused
            return cached[1]
        png = render(analysis, **options)
        self.charts.put(key, (analysis, png))
        return png


def last_close(now: Any, timeframe: str, end: Any = None) -> pd.Timestamp:
    """Close time of the last ``timeframe`` candle closed by ``min(end, now)``."""
    cutoff = to_utc(now) if end is None else min(to_utc(end), to_utc(now))
    return candle_open_time(cutoff, timeframe)


def analysis_key(
    symbol: str, timeframe: str, close: pd.Timestamp, config: Hashable, predictor: Any = None
) -> AnalysisKey:
    """The cache key of an analysis whose last entry candle closes at ``close``."""
    return (normalize_symbol(symbol), timeframe, close, config, model_version(predictor))


def model_version(predictor: Any) -> Hashable:
    """The identity of the model an analysis's ML probability comes from (None: no active model).

    A loaded model (``MLPredictor.model``) is identified by its file and a digest of its header (features,
    training date, samples...), so a retrain or reload changes the key; a predictor without a model attribute
    (tests) by the object itself (the key holds it, so it is not confused with a later one)."""
    if predictor is None or not getattr(predictor, "active", False):
        return None
    model = getattr(predictor, "model", None)
    if model is None:
        return predictor if isinstance(predictor, Hashable) else (type(predictor).__qualname__, id(predictor))
    header = json.dumps(getattr(model, "header", {}), sort_keys=True, default=str)
    return (str(getattr(model, "path", "")), hashlib.sha256(header.encode()).hexdigest())
