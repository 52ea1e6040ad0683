"""Market access: the ``MarketData`` interface and its errors (``source``), Binance spot REST (``binance_client``),
the bundled sample replay (``sample_source``), the factory that picks one (``factory``) and Binance intervals
(``timeframes``). Imports ``ict_modules.core`` (the candle frame) and ``config``; nothing above."""
