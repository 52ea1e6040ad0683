"""Console mode: the bot's own handlers driven from the terminal (stdin/stdout), no Telegram needed.

    python bot.py console                         interactive
    printf '/help\\n/signal BTCUSDT 1h\\n' | python bot.py console

How it works: console mode builds the very same python-telegram-bot ``Application`` as the Telegram bot (same
handlers, command table, sender and formatting) but gives it :class:`ConsoleRequest` instead of HTTP. Each input
line becomes a Telegram ``Update`` (a message from the local user) that the application processes; every Bot API
call the handlers make is answered locally: messages are printed as plain text, photos are saved as PNG files
under ``BOT_DATA_DIR/charts`` with their paths printed, documents under ``BOT_DATA_DIR/console``. Inline buttons
are printed with numbers; type the number to press one. The local user is an admin (it is the operator's machine).

With ``MARKET_DATA=binance`` a quick ping decides whether Binance is reachable; if not, console mode falls back
to the bundled sample data with a one-line notice. With ``MARKET_DATA=sample`` it works offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

from telegram import Update
from telegram.request import BaseRequest, RequestData

from chat import jobs, telegram_app
from chat.sender import strip_html
from chat.services import get_services
from config import Settings
from market.sample_source import offline_fallback
from store.evidence import load_evidence

logger = logging.getLogger(__name__)

CONSOLE_USER_ID = 1
CONSOLE_CHAT_ID = 1
CONSOLE_TOKEN = "0:console-mode-no-telegram"
BOT_USER = {
    "id": 0,
    "is_bot": True,
    "first_name": "ICT Signal Bot",
    "username": "ict_signal_console_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
QUIT = {"/quit", "/exit", "quit", "exit"}
REPLAY_START = "2026-04-07T09:30:00+00:00"  # a busy morning in the bundled data: signals, fills, stops within hours
MIN_JOB_SECONDS = 0.5  # the replay's jobs run at most this often in real time, whatever the speed


class ConsoleRequest(BaseRequest):
    """Answers the Bot API locally: prints messages, saves photos/documents, remembers the last keyboard."""

    def __init__(self, out: TextIO, charts_dir: Path, files_dir: Path) -> None:
        self.out = out
        self.charts_dir = charts_dir
        self.files_dir = files_dir
        self._ids = itertools.count(1)
        self.buttons: list[tuple[str, str]] = []  # (label, callback data) of the last keyboard shown
        self.button_message: dict[str, Any] | None = None
        self.saved: list[Path] = []

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    @property
    def read_timeout(self) -> float | None:
        return None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        api = url.rsplit("/", 1)[-1]
        params = dict(request_data.parameters) if request_data else {}
        files = request_data.multipart_data if request_data and request_data.contains_files else {}
        result = self.answer(api, params, files)
        return 200, json.dumps({"ok": True, "result": result}).encode()

    def answer(self, api: str, params: dict[str, Any], files: dict[str, Any]) -> Any:
        if api == "getMe":
            return BOT_USER
        if api in ("sendMessage", "sendPhoto", "sendDocument"):
            return self.show(api, params, files)
        if api == "editMessageText":
            self.write("(updated)\n" + strip_html(str(params.get("text", ""))))
            self.remember_keyboard(params, {"message_id": params.get("message_id", 0)})
            return self.message(params, text=str(params.get("text", "")))
        if api == "answerCallbackQuery":
            if params.get("text"):
                self.write(f"» {params['text']}")
            return True
        if api == "getMyCommands":
            return []
        return True  # setMyCommands, deleteWebhook, sendChatAction, ...

    def show(self, api: str, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        if api == "sendPhoto":
            path = self.save(files.get("photo"), self.charts_dir, ".png")
            self.write(f"[chart saved: {path}]")
            if params.get("caption"):
                self.write(strip_html(str(params["caption"])))
            message = self.message(params, caption=params.get("caption"))
            message["photo"] = [{"file_id": path.name, "file_unique_id": path.name, "width": 1, "height": 1}]
        elif api == "sendDocument":
            path = self.save(files.get("document"), self.files_dir, "")
            self.write(f"[document saved: {path}]")
            message = self.message(params, caption=params.get("caption"))
            message["document"] = {"file_id": path.name, "file_unique_id": path.name, "file_name": path.name}
        else:
            self.write(strip_html(str(params.get("text", ""))))
            message = self.message(params, text=str(params.get("text", "")))
        self.remember_keyboard(params, message)
        return message

    def remember_keyboard(self, params: dict[str, Any], message: dict[str, Any]) -> None:
        markup = params.get("reply_markup")
        if isinstance(markup, str):
            markup = json.loads(markup)
        rows = (markup or {}).get("inline_keyboard") if isinstance(markup, dict) else None
        if not rows:
            return
        self.buttons = [(b["text"], b.get("callback_data", "")) for row in rows for b in row]
        self.button_message = {**message, "reply_markup": markup}
        labels = "  ".join(f"[{i}] {label}" for i, (label, _) in enumerate(self.buttons, 1))
        self.write(f"{labels}   (type a number to press)")

    def message(self, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
        chat_id = int(params.get("chat_id", CONSOLE_CHAT_ID))
        body = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": BOT_USER,
        }
        body.update({k: v for k, v in extra.items() if v is not None})
        return body

    def save(self, part: Any, folder: Path, suffix: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        filename, content = (part[0], part[1]) if part else ("file", b"")
        if hasattr(content, "read"):
            content = content.read()
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        name = re.sub(r"[^A-Za-z0-9._-]", "_", str(filename or "file"))
        stem, dot, ext = name.rpartition(".")
        base = f"{stamp}-{stem or ext}" + (f".{ext}" if dot else suffix)
        path = folder / base
        counter = 1
        while path.exists():
            path = folder / f"{counter}-{base}"
            counter += 1
        path.write_bytes(content)
        self.saved.append(path)
        return path

    def write(self, text: str) -> None:
        self.out.write(text.rstrip("\n") + "\n")
        self.out.flush()


class UpdateFactory:
    """Turns console lines into Telegram update dictionaries from the local user."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.user = {"id": CONSOLE_USER_ID, "is_bot": False, "first_name": "console", "username": "console"}
        self.chat = {"id": CONSOLE_CHAT_ID, "type": "private", "first_name": "console"}

    def message(self, text: str) -> dict[str, Any]:
        n = next(self._ids)
        message: dict[str, Any] = {
            "message_id": 100000 + n,
            "date": int(time.time()),
            "chat": self.chat,
            "from": self.user,
            "text": text,
        }
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return {"update_id": n, "message": message}

    def press(self, data: str, message: dict[str, Any] | None) -> dict[str, Any]:
        n = next(self._ids)
        query: dict[str, Any] = {"id": str(n), "from": self.user, "chat_instance": "console", "data": data}
        if message is not None:
            query["message"] = message
        return {"update_id": n, "callback_query": query}


def console_settings(settings: Settings, out: TextIO) -> Settings:
    """The local user becomes an admin; Binance unreachable -> the bundled sample data, with a notice."""
    settings = replace(settings, admin_ids=settings.admin_ids | {CONSOLE_USER_ID})
    return offline_fallback(settings, lambda line: out.write(line + "\n"))


async def run_console(
    settings: Settings, lines: Any, out: TextIO, *, interactive: bool = False, replay: float | None = None
) -> int:
    """Process ``lines`` (an iterator of strings, or None to read stdin) through the bot's handlers.

    ``replay``: the replay demo at that speed (:func:`replay_settings`, :func:`replay_jobs`)."""
    if replay is not None:
        settings, first_line = replay_settings(settings, replay)
        out.write(first_line + "\n")
    settings = console_settings(settings, out)
    request = ConsoleRequest(out, settings.bot_data_dir / "charts", settings.bot_data_dir / "console")
    application = telegram_app.build_application(
        settings, request=request, token=CONSOLE_TOKEN, mode="console", jobs=False, rate_limiter=False
    )
    factory = UpdateFactory()
    await application.initialize()
    await application.start()  # running: tasks the handlers create (the outbox drain) are tracked and awaited
    background: list[asyncio.Task] = []  # the replay's scan and monitor loops
    try:
        await telegram_app.post_init(application)
        out.write("ICT Signal Bot console. Type /help, e.g. /signal BTCUSDT 1h; /quit to leave.\n")
        notice = demo_watchlist_notice(settings, get_services(application).market)
        if notice:
            out.write(notice + "\n")
        out.flush()
        if replay is not None:
            background = await start_replay(application, settings, out)
        while True:
            line = await next_line(lines, prompt="> " if interactive else None)
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            if line.lower() in QUIT:
                break
            if line.isdigit() and request.buttons:
                index = int(line) - 1
                if not 0 <= index < len(request.buttons):
                    out.write(f"No button {line}; choose 1-{len(request.buttons)}.\n")
                    continue
                data = factory.press(request.buttons[index][1], request.button_message)
            else:
                out.write(f"> {line}\n" if not interactive else "")
                data = factory.message(line)
            await application.process_update(Update.de_json(data, application.bot))
            await settle(application)
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await application.stop()
        await telegram_app.post_shutdown(application)
        await application.shutdown()
    return 0


def replay_settings(settings: Settings, speed: float) -> tuple[Settings, str]:
    """The replay demo's settings (the bundled data, its clock ``speed`` times fast) and its first line.

    The clock starts at SAMPLE_START or :data:`REPLAY_START`. When the evidence gate would let nothing through
    (no setup with a positive out-of-sample record in BOT_DATA_DIR/evidence.json) the demo runs the confidence
    gate, so that a newcomer sees what tracking does; the first line says so."""
    start = settings.sample_start or datetime.fromisoformat(REPLAY_START)
    settings = replace(settings, market_data="sample", sample_speed=speed, sample_start=start)
    gate = ""
    evidence = load_evidence(settings.bot_data_dir)
    if getattr(settings, "gate", None) == "evidence" and not any(evidence.passes(name) for name in evidence.setups):
        settings = replace(settings, gate="confidence")
        gate = (
            " GATE=confidence for this demo: the evidence gate passes no setup on the bundled data, so signals"
            f" are broadcast by rule score (MIN_CONFIDENCE {settings.min_confidence:g})."
        )
    return settings, (
        f"Replay demo: the bundled market from {start:%Y-%m-%d %H:%M} UTC at {speed:g}x"
        f" ({speed / 60:g} market hour(s) a minute); the watchlist is scanned every"
        f" {settings.auto_signal_interval_minutes} market minutes and open positions are watched; you are"
        f" subscribed, so signals and their alerts appear here without typing.{gate}"
    )


async def start_replay(application: Any, settings: Settings, out: TextIO) -> list[asyncio.Task]:
    """Subscribe the console user and start the replay's scan and monitor loops (market-time intervals)."""
    services = get_services(application)
    if services.store is not None:
        await asyncio.to_thread(services.store.subscribe, CONSOLE_CHAT_ID)
    speed = settings.sample_speed
    context = SimpleNamespace(application=application, bot_data=application.bot_data)  # what job_monitor reads
    clock = MarketClockLine(services.market, out)

    async def scan() -> None:
        clock.show()
        await jobs.scan_now(application)

    return [
        asyncio.create_task(
            every(max(settings.auto_signal_interval_minutes * 60 / speed, MIN_JOB_SECONDS), scan), name="replay scan"
        ),
        asyncio.create_task(
            every(max(settings.monitor_interval_seconds / speed, MIN_JOB_SECONDS), lambda: jobs.job_monitor(context)),
            name="replay monitor",
        ),
    ]


async def every(seconds: float, job: Any) -> None:
    """Run ``job()`` now and then every ``seconds`` (real time) until cancelled; a failure is logged, not fatal."""
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("replay job failed")
        await asyncio.sleep(seconds)


class MarketClockLine:
    """Prints the market time once per market hour, so the replay's passing time is visible."""

    def __init__(self, market: Any, out: TextIO) -> None:
        self.market, self.out, self.last = market, out, None

    def show(self) -> None:
        try:
            hour = self.market.now().floor("h")
        except Exception:
            return
        if hour != self.last:
            self.last = hour
            self.out.write(f"🕐 market time {self.market.now():%Y-%m-%d %H:%M} UTC\n")
            self.out.flush()


def demo_watchlist_notice(settings: Settings, market: Any) -> str | None:
    """One line when the sample data lacks watchlist symbols: the demo scans the bundled ones."""
    if settings.market_data != "sample" or market is None:
        return None
    bundled = market.symbols()
    missing = [s for s in settings.watchlist if s not in bundled]
    if not missing:
        return None
    return f"Demo watchlist: {', '.join(bundled)} (the bundled data; {', '.join(missing)} not in it)."


async def settle(application: Any) -> None:
    """Let background tasks the handlers started (e.g. the outbox drain) finish before the next line."""
    for _ in range(50):
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        pending = [t for t in pending if not t.get_name().startswith(("Application:", "Updater:", "JobQueue"))]
        if not pending:
            return
        await asyncio.wait(pending, timeout=0.2)


async def next_line(lines: Any, prompt: str | None = None) -> str | None:
    """The next input line (None at the end). Interactive: ``input()`` with line editing, in a worker thread."""
    if lines is not None:
        return next(lines, None)
    if prompt is not None:
        try:
            return await asyncio.to_thread(input, prompt)
        except EOFError:
            return None
    text = await asyncio.to_thread(sys.stdin.readline)
    return text if text else None


def main(args: Any, settings: Settings) -> int:
    """``python bot.py console`` (or no token): the console loop on stdin/stdout."""
    if not getattr(args, "verbose", False):
        logging.getLogger().setLevel(logging.WARNING)
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - line editing and history for input()
    replay = getattr(args, "replay", None)
    if replay is not None and not replay > 0:
        print(f"console: --replay SPEED must be positive, got {replay:g}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_console(settings, None, sys.stdout, interactive=interactive, replay=replay))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # e.g. BOT_DATA_DIR not writable
        print(f"cannot start console mode: {exc}", file=sys.stderr)
        return 1
