"""The analysis engine's parts that ``ict_signal_engine`` composes, and the signal type every layer shares.

- ``signal_model``: ``Signal`` / ``NoTrade``, validated on construction (every layer imports it).
- ``config``: ``EngineConfig`` (the rules' tunables) and the confidence ``WEIGHTS``.
- ``registry``: the detector table (function references into ``ict_modules``), ``prepare`` and ``Prepared``;
  ``indicators``: what ``prepare`` computes once per frame for every detector (the ATR).
- ``windows``: the block-aligned window rule, which closed candles an analysis at a given moment reads.
- ``views`` / ``tables``: the engine's neutral view of detector output (zones, levels, structure marks, the
  ``Snapshot`` type) and the arrays that read it as known at a bar.
- ``snapshot``: ``snapshot_at``, every step's input at one bar.
- ``planning``: direction, entry plan, stop and targets; ``scoring``: entry model, confidence, features, components.

Pure over the candles given: imports ``ict_modules``, ``market.timeframes``, numpy, pandas and scipy only, never the
chat, store or market-access layers, and never ``ict_signal_engine`` (which imports it).
"""
