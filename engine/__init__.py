"""The analysis engine's parts that ``ict_signal_engine`` composes, and the signal type every layer shares
(``signal_model``). Pure over the candles it is given: imports ``ict_modules`` and ``market.timeframes`` only."""
