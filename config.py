"""Settings: one frozen object built from the environment (and an optional ``.env`` file), validated at start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from market.timeframes import parse_interval
from tracking.costs import DEFAULT_EXIT_PLAN, DEFAULT_FEE_PCT, DEFAULT_SLIPPAGE_PCT, parse_exit_plan


class ConfigError(ValueError):
    """A configuration value is wrong; the message is one line naming the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    telegram_bot_token: str | None = field(default=None, repr=False)
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    admin_ids: frozenset[int] = frozenset()
    allowed_user_ids: frozenset[int] = frozenset()
    signal_rate_limit: tuple[int, int] = (5, 60)
    binance_api_base_url: str = "https://api.binance.com"
    market_data: str = "binance"
    sample_data_dir: Path = Path("data/sample")
    sample_start: datetime | None = None  # replay clock start (UTC); None: market_data's default near the data end
    sample_speed: float = 1.0  # replay seconds per real second; 0 freezes the sample clock
    bot_data_dir: Path = Path("data")
    watchlist: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
    auto_signal_timeframes: tuple[str, ...] = ("1h", "4h")
    auto_signal_interval_minutes: int = 15
    min_confidence: float = 60.0
    min_risk_reward: float = 1.5
    monitor_interval_seconds: int = 30
    daily_report_time: time = time(8, 0)
    bot_timezone: str = "UTC"
    fee_pct: float = DEFAULT_FEE_PCT  # per side, percent of notional (tracking.costs)
    slippage_pct: float = DEFAULT_SLIPPAGE_PCT  # percent, against the trader on market entries and stop exits
    exit_plan: tuple[float, float, float] = DEFAULT_EXIT_PLAN  # percent closed at TP1, TP2, TP3
    gate: str = "evidence"  # what is broadcast and tracked: evidence | confidence | off (tracking.gate)
    dask_scheduler_address: str | None = None  # `evaluate` fans out to this Dask scheduler; None: local processes
    telegram_webhook_url: str | None = None  # public https URL Telegram posts updates to; None: long polling
    telegram_webhook_listen: tuple[str, int] = ("0.0.0.0", 8443)  # host and port the webhook server binds
    telegram_webhook_secret: str | None = field(default=None, repr=False)  # checked on every posted update
    broadcast_channel_id: int | None = None  # a channel/group the bot posts every broadcast signal to (as admin)

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        token = "'***'" if self.telegram_bot_token else "None"
        return f"Settings(telegram_bot_token={token}, {shown})"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.bot_timezone)

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.admin_ids

    def is_allowed(self, user_id: int | None) -> bool:
        if not self.allowed_user_ids:
            return True
        return user_id is not None and (user_id in self.allowed_user_ids or user_id in self.admin_ids)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")) -> Settings:
        """Build settings from ``env`` (default: ``os.environ`` over the ``.env`` file); raise ConfigError."""
        values = dict(read_dotenv(dotenv)) if dotenv is not None else {}
        values.update(os.environ if env is None else env)
        get = lambda name: (values.get(name) or "").strip()  # noqa: E731 - tiny local accessor
        kwargs: dict[str, object] = {}
        for name, parse in _PARSERS.items():
            raw = get(name)
            if not raw:
                continue
            try:
                kwargs[name.lower()] = parse(raw)
            except (ValueError, KeyError) as exc:
                shown = "***" if name in _SECRETS else raw[:60]
                raise ConfigError(f"{name}={shown!r} is invalid: {exc}") from None
        if kwargs.get("telegram_webhook_url") and not kwargs.get("telegram_webhook_secret"):
            raise ConfigError(
                "TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_WEBHOOK_URL (1-256 characters: A-Z a-z 0-9 _ -)"
            )
        return cls(**kwargs)


def read_dotenv(path: Path | None) -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines (comments, blank lines, optional quotes, ``export``); missing file -> {}."""
    if path is None or not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", line)
        if not match or line.lstrip().startswith("#"):
            continue
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        out[key] = value
    return out


def _ids(raw: str) -> frozenset[int]:
    try:
        return frozenset(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ValueError("expected comma-separated numeric Telegram user ids, e.g. 11111111,22222222") from None


def _rate(raw: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+)", raw)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValueError("expected COUNT/SECONDS with positive numbers, e.g. 5/60")
    return int(match[1]), int(match[2])


def _url(raw: str) -> str:
    if not re.match(r"^https?://[^\s/]+", raw):
        raise ValueError("expected an http(s) URL")
    return raw.rstrip("/") if not raw.endswith("/bot") else raw


def _token(raw: str) -> str:
    if not re.fullmatch(r"\d+:[A-Za-z0-9_-]{20,}", raw):
        raise ValueError("expected a BotFather token like 123456:ABC-DEF... ")
    return raw


def _choice(*options: str):
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return raw.lower()

    return parse


def _symbols(raw: str) -> tuple[str, ...]:
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
    bad = [s for s in symbols if not re.fullmatch(r"[A-Z0-9]{5,20}", s)]
    if bad or not symbols:
        raise ValueError(f"expected comma-separated Binance symbols like BTCUSDT,ETHUSDT (bad: {bad})")
    return symbols


def _timeframes(raw: str) -> tuple[str, ...]:
    frames = tuple(dict.fromkeys(parse_interval(s) for s in raw.split(",") if s.strip()))
    if not frames:
        raise ValueError("expected comma-separated timeframes like 1h,4h")
    return frames


def _bounded(kind: type, low: float, high: float):
    def parse(raw: str):
        value = kind(raw)
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low:g} to {high:g}")
        return value

    return parse


def _clock(raw: str) -> time:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", raw)
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError("expected HH:MM, e.g. 08:00")
    return time(int(match[1]), int(match[2]))


def _utc_time(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("expected an ISO time such as 2026-04-01 or 2026-04-01T12:00 (UTC)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _scheduler(raw: str) -> str:
    if not re.fullmatch(r"(?:[a-z]+://)?[^\s/:]+:\d{1,5}", raw):
        raise ValueError("expected a Dask scheduler address like tcp://10.0.0.5:8786")
    return raw


def _webhook_url(raw: str) -> str:
    if not re.fullmatch(r"https://[^\s/:]+(?::\d{1,5})?(/[^\s]*)?", raw):
        raise ValueError("expected the public https URL Telegram posts to, e.g. https://bot.example.com/telegram")
    return raw


def _listen(raw: str) -> tuple[str, int]:
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:8443")
    return host.strip("[]"), int(port)


def _secret(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", raw):
        raise ValueError("expected 1-256 characters from A-Z a-z 0-9 _ - (Telegram's rule for secret tokens)")
    return raw


def _channel(raw: str) -> int:
    if not re.fullmatch(r"-\d{5,20}", raw):
        raise ValueError("expected the channel's numeric id, e.g. -1001234567890 (channels and groups are negative)")
    return int(raw)


def _zone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as UTC or Europe/Berlin") from None
    return raw


_PARSERS = {
    "TELEGRAM_BOT_TOKEN": _token,
    "TELEGRAM_API_BASE_URL": _url,
    "ADMIN_IDS": _ids,
    "ALLOWED_USER_IDS": _ids,
    "SIGNAL_RATE_LIMIT": _rate,
    "BINANCE_API_BASE_URL": _url,
    "MARKET_DATA": _choice("binance", "sample"),
    "SAMPLE_DATA_DIR": Path,
    "SAMPLE_START": _utc_time,
    "SAMPLE_SPEED": _bounded(float, 0, 100_000),
    "BOT_DATA_DIR": Path,
    "WATCHLIST": _symbols,
    "AUTO_SIGNAL_TIMEFRAMES": _timeframes,
    "AUTO_SIGNAL_INTERVAL_MINUTES": _bounded(int, 1, 1440),
    "MIN_CONFIDENCE": _bounded(float, 0, 100),
    "MIN_RISK_REWARD": _bounded(float, 0.1, 20),
    "MONITOR_INTERVAL_SECONDS": _bounded(int, 5, 3600),
    "DAILY_REPORT_TIME": _clock,
    "BOT_TIMEZONE": _zone,
    "FEE_PCT": _bounded(float, 0, 5),
    "SLIPPAGE_PCT": _bounded(float, 0, 5),
    "EXIT_PLAN": parse_exit_plan,
    "GATE": _choice("evidence", "confidence", "off"),
    "DASK_SCHEDULER_ADDRESS": _scheduler,
    "TELEGRAM_WEBHOOK_URL": _webhook_url,
    "TELEGRAM_WEBHOOK_LISTEN": _listen,
    "TELEGRAM_WEBHOOK_SECRET": _secret,
    "BROADCAST_CHANNEL_ID": _channel,
}
_SECRETS = ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET")  # never echoed in an error
