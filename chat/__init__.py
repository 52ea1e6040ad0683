"""Talking to people: the Telegram application and its handlers, the sending chokepoint, console mode, the
``signal`` CLI, message formatting, charts, the glossary and the typed services container. The only layer (with
``bot.py`` and the root workflows) that may import ``telegram``.

Inside, imports point down: ``telegram_app`` -> ``handlers`` (the command table, the callback router) -> the
command families (``signal_commands``, ``account_commands``, ``admin_module`` at the root) -> ``jobs`` (outbox,
scan, monitor, reports, retrain) -> ``tracking_commands`` -> ``commands`` (spec, guard, reply helpers) ->
``services`` and ``sender``."""

__version__ = "0.1.0"  # the release (pyproject.toml's version; a test keeps them equal): /version, bot.py --version
