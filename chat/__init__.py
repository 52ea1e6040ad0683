"""Talking to people: the Telegram application and its handlers, the sending chokepoint, console mode, the
``signal`` CLI, message formatting, charts, the glossary and the typed services container. The only layer (with
``bot.py`` and the root workflows) that may import ``telegram``."""
