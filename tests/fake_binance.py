"""A local Binance-shaped HTTP server for tests: real HTTP on 127.0.0.1, candles from the sample data, faults.

Usage::

    from tests.fake_binance import FakeBinance, Reply, fake_binance  # fake_binance: the pytest fixture

    with FakeBinance(now="2026-04-01 12:00") as fake:       # or: def test_x(fake_binance): ...
        client = BinanceClient(fake.url)                     # BINANCE_API_BASE_URL=fake.url
        fake.now = fake.now + pd.Timedelta(minutes=5)        # move the exchange clock (settable)
        fake.script(Reply.rate_limited(retry_after=2), Reply.server_error(503))  # the next two answers
        fake.count("/api/v3/klines"); fake.requests          # what the client asked (a list of Request)

Endpoints (GET), answered like Binance spot REST from ``data_dir`` files or the given ``frames`` (through
``sample_source.SampleSource``, so every interval is available, resampled as Binance aligns it):

- ``/api/v3/klines?symbol&interval[&limit<=1000][&startTime][&endTime]``: 12-element arrays of the candles
  opening at or before ``now``, including the still-forming last candle (built from the finer closed candles);
  with ``startTime`` the first ``limit`` candles, else the last ``limit``.
- ``/api/v3/ticker/price?symbol``, ``/api/v3/time``, ``/api/v3/ping``, ``/api/v3/exchangeInfo[?symbol]``
  (status per symbol from ``fake.statuses``, default ``TRADING``).
- Errors as Binance sends them: ``{"code": -1121, "msg": "Invalid symbol."}`` (400), -1120 bad interval,
  -1130 bad limit. Every reply carries ``X-MBX-USED-WEIGHT-1M`` (``fake.used_weight``, Binance's weights).

Faults: ``fake.script(*replies)`` queues ``Reply`` objects, consumed one per request (by the next request to
``reply.path`` when set). ``Reply(body=None)`` serves the normal answer, after ``delay`` seconds if given;
``Reply.silent()`` never answers (until the server stops): a read timeout whatever the machine's speed.
``latency`` (seconds) is added to every answer, like the round trip to the real Binance (benches).
``fake.fault = reply`` answers every request (to ``reply.path`` when set) with ``reply`` once the script is empty,
until set back to None: an outage that lasts until the test clears it. ``Reply.dropped()`` closes the connection
without answering (the client sees the server disconnect).

Concurrency: ``fake.in_flight`` / ``fake.max_in_flight`` count requests being answered at once;
``fake.rendezvous(n, path)`` holds the next ``n`` requests to ``path`` until all ``n`` are in flight together
(proof of concurrency that does not depend on timing; a serial client breaks it after ``timeout``).
Request weight: with ``weight_clock`` (e.g. ``time.time``) ``used_weight`` restarts every minute of that clock,
as Binance's does, and ``weight_per_minute`` keeps each minute's total; without it the weight only grows (tests
set it by hand).

The data files are parsed (and the series of their own intervals built) before the server accepts a connection,
so no request pays for loading: a client's timeout never races the parsing of gzipped CSVs.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pytest

from market.sample_source import SampleSource, default_start
from market.source import MarketDataError, to_utc
from market.timeframes import INTERVAL_MS, candle_open_time, interval_timedelta

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"
SILENT = 3600.0  # seconds: "never" for a test
WEIGHTS = {"/api/v3/ticker/price": 2, "/api/v3/exchangeInfo": 20, "/api/v3/time": 1, "/api/v3/ping": 1}


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer. ``body=None``: the normal answer (after ``delay`` seconds)."""

    status: int = 200
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    path: str | None = None
    drop: bool = False  # close the connection without an answer

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1, status: int = 429, **kw) -> Reply:
        """429 (or 418: IP banned) with ``Retry-After`` seconds (None: without the header)."""
        headers = (("Retry-After", f"{retry_after:g}"),) if retry_after is not None else ()
        msg = "Too many requests; current limit of IP is 6000 request weight per 1 MINUTE."
        return cls(status, _json({"code": -1003, "msg": msg}), headers, **kw)

    @classmethod
    def server_error(cls, status: int = 500, **kw) -> Reply:
        msg = "An unknown error occurred while processing the request."
        return cls(status, _json({"code": -1000, "msg": msg}), **kw)

    @classmethod
    def slow(cls, seconds: float, **kw) -> Reply:
        """The normal answer after ``seconds`` (longer than the client's read timeout: a timeout)."""
        return cls(delay=seconds, **kw)

    @classmethod
    def silent(cls, **kw) -> Reply:
        """No answer at all until the server stops: the client's read timeout fires, however fast the machine."""
        return cls(delay=SILENT, **kw)

    @classmethod
    def dropped(cls, **kw) -> Reply:
        """The connection is closed without a byte of answer (a reset proxy, a crashed server)."""
        return cls(0, b"", drop=True, **kw)

    @classmethod
    def malformed(cls, **kw) -> Reply:
        return cls(200, b'[[1712000000000,"1.0","2.0"', **kw)

    @classmethod
    def error(cls, code: int, msg: str, status: int = 400, **kw) -> Reply:
        """A Binance error body, e.g. ``Reply.error(-1121, "Invalid symbol.")``."""
        return cls(status, _json({"code": code, "msg": msg}), **kw)

    @classmethod
    def restricted(cls, **kw) -> Reply:
        """HTTP 451: Binance refuses the client's location."""
        msg = "Service unavailable from a restricted location according to 'b. Eligibility' in our Terms."
        return cls(451, _json({"code": 0, "msg": msg}), **kw)


@dataclass(frozen=True, slots=True)
class Request:
    """One request the server received and the status it answered."""

    path: str
    params: dict[str, str] = field(default_factory=dict)
    status: int = 200


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _num(x: float) -> str:
    return repr(float(x))


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


class FakeBinance:
    """The server (see the module docstring). Attributes: ``url``, ``now``, ``requests``, ``used_weight``,
    ``statuses``."""

    def __init__(
        self,
        *,
        now: object | None = None,
        data_dir: Path | None = SAMPLE_DIR,
        frames: Mapping[tuple[str, str], pd.DataFrame] | None = None,
        latency: float = 0.0,
        weight_clock: Callable[[], float] | None = None,
    ) -> None:
        self.latency = latency
        self.weight_clock = weight_clock
        self.weight_per_minute: dict[int, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._rendezvous: tuple[threading.Barrier, str, float] | None = None
        self._rendezvous_left = self._rendezvous_after = 0
        self.source = SampleSource(data_dir, frames=dict(frames or {}), clock=lambda: self.now)
        self.now: pd.Timestamp = to_utc(now) if now is not None else default_start(self.source.data_spans())
        self.statuses = {symbol: "TRADING" for symbol in self.source.symbols()}
        self._preload()
        self.requests: list[Request] = []
        self.used_weight = 0
        self._script: deque[Reply] = deque()
        self.fault: Reply | None = None  # answers every request (to fault.path) while set and the script is empty
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-binance", daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _preload(self) -> None:
        """Parse every file and build each symbol's series of its own intervals now, before serving."""
        for symbol, spans in ((s, self.source.file_spans(s)) for s in self.source.symbols()):
            for interval in spans:
                self.source.series(symbol, interval)

    # -- lifecycle

    def start(self) -> FakeBinance:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls

    def script(self, *replies: Reply) -> None:
        """Queue scripted replies (consumed in order, one per matching request)."""
        with self._lock:
            self._script.extend(replies)

    def count(self, path: str | None = None) -> int:
        """How many requests arrived (to ``path``, when given)."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def rendezvous(self, n: int, path: str, *, after: int = 0, timeout: float = 30.0) -> None:
        """Hold ``n`` requests to ``path`` (after letting ``after`` pass) until ``n`` are in flight together, or
        ``timeout`` passes."""
        with self._lock:
            self._rendezvous, self._rendezvous_left = (threading.Barrier(n), path, timeout), n
            self._rendezvous_after = after

    def _meet(self, path: str) -> None:
        with self._lock:
            if self._rendezvous is None or self._rendezvous[1] != path:
                return
            if self._rendezvous_after > 0:
                self._rendezvous_after -= 1
                return
            barrier, _, timeout = self._rendezvous
            self._rendezvous_left -= 1
            if self._rendezvous_left == 0:
                self._rendezvous = None
        with contextlib.suppress(threading.BrokenBarrierError):  # a serial client: a concurrency test fails
            barrier.wait(timeout)

    def _entered(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    # -- serving

    def _next_reply(self, path: str) -> Reply | None:
        with self._lock:
            for i, reply in enumerate(self._script):
                if reply.path in (None, path):
                    del self._script[i]
                    return reply
            fault = self.fault
        return fault if fault is not None and fault.path in (None, path) else None

    def handle(self, path: str, params: dict[str, str]) -> tuple[Reply, float]:
        """The reply to one request (scripted or normal) and the delay before sending it."""
        scripted = self._next_reply(path)
        normal = scripted is None or scripted.body is None
        reply = self.answer(path, params) if normal else scripted
        with self._lock:
            weight = self._weight(path, params)
            if self.weight_clock is not None:
                minute = int(self.weight_clock() // 60)
                if minute not in self.weight_per_minute:
                    self.used_weight = 0  # a new minute: Binance's counter restarts
                self.weight_per_minute[minute] = self.weight_per_minute.get(minute, 0) + weight
            self.used_weight += weight
            self.requests.append(Request(path, params, reply.status))
        return reply, self.latency + (scripted.delay if scripted is not None else 0.0)

    def _weight(self, path: str, params: dict[str, str]) -> int:
        if path != "/api/v3/klines":
            return WEIGHTS.get(path, 1)
        limit = int(params.get("limit", 500)) if params.get("limit", "").isdigit() else 500
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10

    def answer(self, path: str, params: dict[str, str]) -> Reply:
        """Binance's normal answer to ``path`` at ``self.now``."""
        try:
            if path == "/api/v3/ping":
                return Reply(body=b"{}")
            if path == "/api/v3/time":
                return Reply(body=_json({"serverTime": _ms(self.now)}))
            if path == "/api/v3/exchangeInfo":
                return self._exchange_info(params)
            symbol = params.get("symbol", "")
            if symbol not in self.source.symbols():
                return Reply.error(-1121, "Invalid symbol.")
            if path == "/api/v3/ticker/price":
                return Reply(body=_json({"symbol": symbol, "price": _num(self.source.price(symbol))}))
            if path == "/api/v3/klines":
                return self._klines(symbol, params)
        except MarketDataError as exc:  # the sample data has nothing at self.now
            return Reply.error(-1000, str(exc))
        return Reply(404, b"<html>Not Found</html>")

    def _exchange_info(self, params: dict[str, str]) -> Reply:
        names = [params["symbol"]] if "symbol" in params else sorted(self.statuses)
        if any(name not in self.statuses for name in names):
            return Reply.error(-1121, "Invalid symbol.")
        symbols = [
            {"symbol": n, "status": self.statuses[n], "baseAsset": n[:-4], "quoteAsset": n[-4:], "permissions": []}
            for n in names
        ]
        limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}]
        info = {"timezone": "UTC", "serverTime": _ms(self.now), "rateLimits": limits, "symbols": symbols}
        return Reply(body=_json(info))

    def _klines(self, symbol: str, params: dict[str, str]) -> Reply:
        interval = params.get("interval", "")
        if interval not in INTERVAL_MS:
            return Reply.error(-1120, "Invalid interval.")
        limit = int(params.get("limit", 500))
        if not 1 <= limit <= 1000:
            return Reply.error(-1130, "Data sent for parameter 'limit' is not valid.")
        candles = self.candles(symbol, interval)
        if "startTime" in params:
            candles = candles[candles.index >= pd.Timestamp(int(params["startTime"]), unit="ms", tz="UTC")]
        if "endTime" in params:
            candles = candles[candles.index <= pd.Timestamp(int(params["endTime"]), unit="ms", tz="UTC")]
        candles = candles.iloc[:limit] if "startTime" in params else candles.iloc[-limit:]
        return Reply(body=_json([self._row(ts, row, interval) for ts, row in candles.iterrows()]))

    def candles(self, symbol: str, interval: str) -> pd.DataFrame:
        """What Binance has at ``now``: the closed candles plus the still-forming one."""
        series = self.source.series(symbol, interval).candles
        opened = candle_open_time(self.now, interval)
        closed = series[series.index < opened]
        if closed.empty or closed.index[-1] + interval_timedelta(interval) != opened:
            return closed  # the data does not reach now: nothing is forming
        forming = self.source.forming_candle(symbol, interval, self.now)
        if forming is None:  # just opened: a flat candle at the last close
            last = closed["close"].iloc[-1]
            forming = pd.Series([last, last, last, last, 0.0], index=closed.columns, name=opened)
        return pd.concat([closed, forming.to_frame().T])

    @staticmethod
    def _row(ts: pd.Timestamp, row: pd.Series, interval: str) -> list:
        close_time = _ms(ts + interval_timedelta(interval)) - 1
        volume = row["volume"]
        quote = volume * row["close"]
        values = [row["open"], row["high"], row["low"], row["close"], volume]
        return [_ms(ts), *map(_num, values), close_time, _num(quote), 100, _num(volume / 2), _num(quote / 2), "0"]


def _handler_for(fake: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's pooled session expects
        timeout = 5  # idle keep-alive connections close after this
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def do_GET(self) -> None:
            fake._entered(+1)
            try:
                self._answer()
            finally:
                fake._entered(-1)

        def _answer(self) -> None:
            url = urlsplit(self.path)
            fake._meet(url.path)
            reply, delay = fake.handle(url.path, dict(parse_qsl(url.query)))
            if delay and fake._stopping.wait(delay):
                return
            if reply.drop:
                self.close_connection = True
                return
            body = reply.body or b""
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-MBX-USED-WEIGHT-1M", str(fake.used_weight))
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def fake_binance() -> Iterator[FakeBinance]:
    """A started FakeBinance over the bundled sample data (clock at the sample source's default start)."""
    with FakeBinance() as fake:
        yield fake
