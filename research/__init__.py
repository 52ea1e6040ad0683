"""Offline research: the backtest that replays history through the live engine and position logic."""
