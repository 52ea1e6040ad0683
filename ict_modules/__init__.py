"""The 17 ICT detectors: pure, causal functions over validated candle frames (see ``core`` for conventions)."""
