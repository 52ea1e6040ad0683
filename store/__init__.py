"""Persistence: atomic JSON files (``storage``) and the trading journal with its statistics (``journal``).
Imports ``engine.signal_model`` for the signal type; knows nothing of Telegram."""
