"""A local Telegram Bot API server for tests and benchmarks (stdlib ``http.server`` in a thread, 127.0.0.1).

The real python-telegram-bot talks to it over HTTP through ``base_url`` (``TELEGRAM_API_BASE_URL``). It answers
getMe, getUpdates (long polling over updates the test injects: messages, edited messages, callback queries),
sendMessage, sendPhoto, sendDocument (multipart: the file bytes are kept), editMessageText,
editMessageReplyMarkup, answerCallbackQuery, setMyCommands, getMyCommands, setWebhook, deleteWebhook,
sendChatAction, in Telegram's JSON shapes; in webhook mode it posts updates to the URL the bot registered
(:meth:`FakeTelegram.post_to_webhook`). Faults can be injected per method (429 with
``parameters.retry_after``, 409 Conflict, 403 Forbidden, 400 ..., a chat migrated to a supergroup with
``parameters.migrate_to_chat_id``: :meth:`FakeTelegram.migrate`), answered late (:meth:`FakeTelegram.slow`: the
normal answer after a delay, so a client that timed out meanwhile finds its message delivered, as Telegram does),
and Telegram's length limits enforced when ``enforce_limits`` is set (400 "message is too long"). Every call is
recorded for assertions.

    with FakeTelegram() as tg:
        settings = Settings(telegram_bot_token=tg.token, telegram_api_base_url=tg.base_url, ...)
        tg.send_message("/start", user_id=42)
        call = await tg.wait_for("sendMessage", chat_id=42)
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

import httpx

DEFAULT_TOKEN = "123456:TEST-fake-token-abcdefghijklmnop"
LONG_POLL_CAP_SECONDS = 0.5  # getUpdates waits at most this long for an update (keeps shutdown fast)


@dataclass(frozen=True)
class Call:
    """One recorded Bot API call: ``params`` as sent (strings; JSON values decoded where they parse)."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float  # time.monotonic() when received
    status: int  # HTTP status answered

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    @property
    def text(self) -> str:
        return str(self.params.get("text") or self.params.get("caption") or "")

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        markup = self.params.get("reply_markup")
        return markup if isinstance(markup, dict) else None

    def buttons(self) -> list[tuple[str, str]]:
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [(b["text"], b.get("callback_data", "")) for row in rows for b in row]


@dataclass
class Fault:
    status: int
    description: str
    retry_after: int | None = None
    remaining: int = 1
    migrate_to_chat_id: int | None = None
    delay: float = 0.0  # with status 200: the normal answer, this many seconds late


@dataclass
class _State:
    updates: list[dict[str, Any]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    sent: dict[int, dict[str, Any]] = field(default_factory=dict)  # message_id -> message object


class FakeTelegram:
    """The server; thread-safe; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, bot_username: str = "ict_test_bot") -> None:
        self.token = token
        self.bot_user = {
            "id": int(token.split(":")[0]),
            "is_bot": True,
            "first_name": "ICT Test Bot",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self._state = _State()
        self._cond = threading.Condition()
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.on_call: Callable[[Call], None] | None = None  # hook for benchmarks
        self.enforce_limits = False  # refuse texts over 4096 and captions over 1024 characters, as Telegram does

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> FakeTelegram:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                fake._handle(self)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                return None

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-telegram", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            with self._cond:
                self._cond.notify_all()
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    # -- injecting updates -------------------------------------------------------------------------------------

    def _push(self, update: dict[str, Any]) -> int:
        with self._cond:
            update["update_id"] = next(self._update_ids)
            self._state.updates.append(update)
            self._cond.notify_all()
        return update["update_id"]

    @staticmethod
    def user(user_id: int, first_name: str = "Tester") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name, "username": f"user{user_id}"}

    def chat(self, user_id: int, chat_id: int | None, chat_type: str) -> dict[str, Any]:
        if chat_type == "private":
            return {"id": chat_id or user_id, "type": "private", "first_name": "Tester"}
        return {"id": chat_id or -1000000000000 - user_id, "type": chat_type, "title": "Test group"}

    def message(
        self, text: str, *, user_id: int, chat_id: int | None = None, chat_type: str = "private"
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self.chat(user_id, chat_id, chat_type),
            "from": self.user(user_id),
            "text": text,
        }
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return message

    def send_message(
        self, text: str, *, user_id: int, chat_id: int | None = None, chat_type: str = "private", edited: bool = False
    ) -> int:
        """Inject a user's message (or an edit of one); returns the update id."""
        message = self.message(text, user_id=user_id, chat_id=chat_id, chat_type=chat_type)
        if edited:
            message["edit_date"] = message["date"] + 5
            return self._push({"edited_message": message})
        return self._push({"message": message})

    async def post_to_webhook(self, text: str, *, user_id: int, secret: str | None = None) -> tuple[int, int]:
        """Post a user's message to the webhook the bot registered (``setWebhook``: its url and secret_token), as
        Telegram does instead of answering getUpdates; ``secret`` replaces the registered one. Returns (HTTP
        status, update id)."""
        registered = self.calls("setWebhook")
        assert registered, "the bot has not called setWebhook"
        params = registered[-1].params
        token = params.get("secret_token") if secret is None else secret
        update = {"update_id": next(self._update_ids), "message": self.message(text, user_id=user_id)}
        headers = {"X-Telegram-Bot-Api-Secret-Token": token} if token else {}
        async with httpx.AsyncClient() as client:
            answer = await client.post(params["url"], json=update, headers=headers, timeout=10)
        return answer.status_code, update["update_id"]

    def press(self, data: str, *, user_id: int, message: dict[str, Any] | None = None) -> str:
        """Inject a callback query (a button press) on ``message`` (default: a minimal bot message)."""
        query_id = f"cq{next(self._update_ids)}"
        msg = message or {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": "Tester"},
            "from": self.bot_user,
            "text": "(button message)",
        }
        self._push(
            {
                "callback_query": {
                    "id": query_id,
                    "from": self.user(user_id),
                    "chat_instance": "ci",
                    "data": data,
                    "message": msg,
                }
            }
        )
        return query_id

    def sent_message(self, message_id: int) -> dict[str, Any] | None:
        with self._cond:
            return self._state.sent.get(message_id)

    def last_message(self, chat_id: int) -> dict[str, Any] | None:
        """The last message the bot sent to ``chat_id`` (as Telegram would deliver it), for button presses."""
        with self._cond:
            mine = [m for m in self._state.sent.values() if m["chat"]["id"] == chat_id]
        return mine[-1] if mine else None

    # -- faults ------------------------------------------------------------------------------------------------

    def fail(
        self, method: str, status: int, description: str, *, retry_after: int | None = None, times: int = 1
    ) -> None:
        """The next ``times`` calls of ``method`` answer ``status`` (429 -> ``parameters.retry_after``)."""
        with self._cond:
            self._state.faults.setdefault(method, deque()).append(Fault(status, description, retry_after, times))

    def flood(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        self.fail(method, 429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after, times=times)

    def conflict(self, times: int = 1000) -> None:
        self.fail(
            "getUpdates",
            409,
            "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
            times=times,
        )

    def block(self, method: str = "sendMessage", times: int = 1) -> None:
        self.fail(method, 403, "Forbidden: bot was blocked by the user", times=times)

    def migrate(self, method: str, new_chat_id: int, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer that the group became the supergroup ``new_chat_id``."""
        description = "Bad Request: group chat was upgraded to a supergroup chat"
        with self._cond:
            fault = Fault(400, description, remaining=times, migrate_to_chat_id=new_chat_id)
            self._state.faults.setdefault(method, deque()).append(fault)

    def slow(self, method: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` succeed, but only ``seconds`` late (the client may time out)."""
        with self._cond:
            self._state.faults.setdefault(method, deque()).append(Fault(200, "", remaining=times, delay=seconds))

    def _take_fault(self, method: str) -> Fault | None:
        queue = self._state.faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    # -- assertions --------------------------------------------------------------------------------------------

    def calls(self, method: str | None = None, *, chat_id: int | None = None) -> list[Call]:
        with self._cond:
            calls = list(self._state.calls)
        return [
            c
            for c in calls
            if (method is None or c.method == method) and (chat_id is None or c.chat_id == chat_id) and c.status == 200
        ]

    def all_calls(self) -> list[Call]:
        with self._cond:
            return list(self._state.calls)

    async def wait_for(
        self,
        method: str | tuple[str, ...],
        *,
        chat_id: int | None = None,
        count: int = 1,
        after: int = 0,
        where: Callable[[Call], bool] | None = None,
        within: float = 20.0,
    ) -> Call:
        """Wait until at least ``count`` successful calls of ``method`` (beyond the first ``after``) match; return
        the last of them. Raises AssertionError with the calls seen on timeout."""
        methods = (method,) if isinstance(method, str) else method
        deadline = time.monotonic() + within
        while True:
            matching = [c for m in methods for c in self.calls(m, chat_id=chat_id) if where is None or where(c)]
            matching.sort(key=lambda c: c.at)
            matching = matching[after:]
            if len(matching) >= count:
                return matching[count - 1]
            if time.monotonic() > deadline:
                seen = [(c.method, c.chat_id, c.text[:60]) for c in self.all_calls() if c.method != "getUpdates"]
                raise AssertionError(f"timed out waiting for {methods} to chat {chat_id}; calls seen: {seen}")
            await asyncio.sleep(0.01)

    # -- HTTP --------------------------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = urlparse(request.path).path
        parts = path.strip("/").split("/")
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        if len(body) < length:  # the client died mid-request (kill -9 tests): nothing arrived
            request.close_connection = True
            return None
        if len(parts) != 2 or not parts[0].startswith("bot"):
            return self._reply(request, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
        token, method = parts[0][3:], parts[1]
        params, files = _parse_body(request.headers.get("Content-Type") or "", body)
        if token != self.token:
            status, payload = 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        else:
            status, payload = self._answer(method, params, files)
        call = Call(method, params, files, time.monotonic(), status)
        with self._cond:
            self._state.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        self._reply(request, status, payload)

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (shutdown)
            request.wfile.write(data)

    def _answer(self, method: str, params: dict[str, Any], files: dict[str, bytes]) -> tuple[int, dict[str, Any]]:
        with self._cond:
            fault = self._take_fault(method)
        if fault is not None and fault.status == 200:
            time.sleep(fault.delay)  # then the normal answer: delivered, however late
        elif fault is not None:
            payload: dict[str, Any] = {"ok": False, "error_code": fault.status, "description": fault.description}
            if fault.retry_after is not None:
                payload["parameters"] = {"retry_after": fault.retry_after}
            if fault.migrate_to_chat_id is not None:
                payload["parameters"] = {"migrate_to_chat_id": fault.migrate_to_chat_id}
            return fault.status, payload
        too_long = self._over_limit(method, params)
        if too_long:
            return 400, {"ok": False, "error_code": 400, "description": too_long}
        if method == "getUpdates":
            return 200, {"ok": True, "result": self._get_updates(params)}
        result = self._result(method, params, files)
        return 200, {"ok": True, "result": result}

    def _over_limit(self, method: str, params: dict[str, Any]) -> str | None:
        """Telegram's refusal of an over-long text or caption (``enforce_limits``), counted in UTF-16 units."""
        if not self.enforce_limits:
            return None
        text, caption = str(params.get("text") or ""), str(params.get("caption") or "")
        if method in ("sendMessage", "editMessageText") and _utf16(text) > 4096:
            return "Bad Request: message is too long"
        if caption and _utf16(caption) > 1024:
            return "Bad Request: message caption is too long"
        return None

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), LONG_POLL_CAP_SECONDS)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._state.updates = [u for u in self._state.updates if u["update_id"] >= offset]
                if self._state.updates or time.monotonic() >= deadline or self._server is None:
                    return list(self._state.updates[:100])
                self._cond.wait(max(deadline - time.monotonic(), 0.001))

    def _result(self, method: str, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if method == "getMe":
            return self.bot_user
        if method in ("sendMessage", "sendPhoto", "sendDocument"):
            chat_id = int(params["chat_id"])
            message: dict[str, Any] = {
                "message_id": next(self._message_ids),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group", "title": "chat"},
                "from": self.bot_user,
            }
            if method == "sendMessage":
                message["text"] = str(params.get("text", ""))
            elif method == "sendPhoto":
                size = len(files.get("photo", b""))
                message["photo"] = [
                    {
                        "file_id": f"photo{message['message_id']}",
                        "file_unique_id": "u",
                        "width": 800,
                        "height": 600,
                        "file_size": size,
                    }
                ]
            else:
                message["document"] = {
                    "file_id": f"doc{message['message_id']}",
                    "file_unique_id": "d",
                    "file_name": "file",
                }
            if params.get("caption"):
                message["caption"] = str(params["caption"])
            if isinstance(params.get("reply_markup"), dict):
                message["reply_markup"] = params["reply_markup"]
            with self._cond:
                self._state.sent[message["message_id"]] = message
            return message
        if method in ("editMessageText", "editMessageReplyMarkup", "editMessageCaption"):
            message_id = int(params.get("message_id") or 0)
            with self._cond:
                message = dict(self._state.sent.get(message_id) or {})
            message.setdefault("message_id", message_id)
            message.setdefault("date", int(time.time()))
            message.setdefault("chat", {"id": int(params.get("chat_id") or 0), "type": "private"})
            if "text" in params:
                message["text"] = str(params["text"])
            if isinstance(params.get("reply_markup"), dict):
                message["reply_markup"] = params["reply_markup"]
            return message
        if method == "getMyCommands":
            sets = [c for c in self.calls("setMyCommands")]
            return sets[-1].params.get("commands", []) if sets else []
        return True  # answerCallbackQuery, setMyCommands, deleteWebhook, sendChatAction, ...


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 128  # the listen backlog: a burst of connections (fuzz, benches) is queued, not reset

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (kill -9 tests) resets its connection: not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _decode(value: str) -> Any:
    """Bot API form values are JSON for objects and arrays; keep plain strings as they are."""
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _parse_body(content_type: str, body: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    if not body:
        return params, files
    if content_type.startswith("application/json"):
        data = json.loads(body)
        return {k: _decode(v) if isinstance(v, str) else v for k, v in data.items()}, files
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_param("filename", header="content-disposition") is not None:
                files[name] = payload
            else:
                params[name] = _decode(payload.decode("utf-8"))
        return params, files
    return {k: _decode(v) for k, v in parse_qsl(body.decode("utf-8"), keep_blank_values=True)}, files
