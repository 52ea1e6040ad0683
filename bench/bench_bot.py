"""Benchmark the Telegram bot end to end over real HTTP against the local Bot API server.

    python bench/bench_bot.py [--repeat 20] [--concurrent 24]

1. Latency: time from an injected ``/signal`` update (put into the fake server's getUpdates queue) to the chart
   photo arriving at the fake server (``sendPhoto``), one request at a time; p50 / p95 / max.
2. Throughput: ``--concurrent`` users send ``/signal`` at the same moment; how many requests per second one
   process answers (first injection to last photo), and the latency distribution under that load.

Market data: the bundled sample source on a fixed clock (no network). MIN_CONFIDENCE=100 so no signal is tracked
(the request path only). The rate limit is lifted for the benchmark users.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat import telegram_app  # noqa: E402
from chat.services import build_services  # noqa: E402
from config import Settings  # noqa: E402
from market.sample_source import SampleSource  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402

PAIRS = (("BTCUSDT", "1h"), ("ETHUSDT", "1h"), ("SOLUSDT", "1h"), ("BTCUSDT", "4h"), ("ETHUSDT", "4h"))
NOW = pd.Timestamp("2026-03-02 12:05", tz="UTC")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def replies(tg: FakeTelegram, chat_id: int) -> int:
    return len([c for c in tg.calls(chat_id=chat_id) if c.method in ("sendPhoto", "sendMessage")])


async def answered(tg: FakeTelegram, chat_id: int, before: int, within: float = 120) -> float:
    """Wait for the next reply (photo, or text for a no-trade) to ``chat_id``; its arrival time."""
    call = await tg.wait_for(("sendPhoto", "sendMessage"), chat_id=chat_id, count=before + 1, within=within)
    return call.at


async def bench(repeat: int, concurrent: int) -> None:
    with FakeTelegram() as tg, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            telegram_bot_token=tg.token,
            telegram_api_base_url=tg.base_url,
            market_data="sample",
            sample_data_dir=ROOT / "data" / "sample",
            bot_data_dir=Path(tmp),
            signal_rate_limit=(10_000, 1),
            min_confidence=100.0,
            auto_signal_interval_minutes=1440,
            monitor_interval_seconds=3600,
        )
        market = SampleSource(ROOT / "data" / "sample", clock=lambda: NOW)
        app = telegram_app.build_application(
            settings, services_factory=lambda: build_services(settings, mode="telegram", market=market)
        )
        async with telegram_app.running(app, poll_timeout=1):
            # warm-up: load the sample files and import everything once
            for symbol, tf in PAIRS:
                before = replies(tg, 1)
                tg.send_message(f"/signal {symbol} {tf}", user_id=1)
                await answered(tg, 1, before)
            await asyncio.sleep(0.2)

            latencies = []
            for i in range(repeat):
                symbol, tf = PAIRS[i % len(PAIRS)]
                before = replies(tg, 2)
                start = time.monotonic()
                tg.send_message(f"/signal {symbol} {tf}", user_id=2)
                arrived = await answered(tg, 2, before)
                latencies.append(arrived - start)
            photos = len(tg.calls("sendPhoto", chat_id=2))
            print(f"sequential /signal x{repeat} ({photos} answered with a chart photo):")
            print(
                f"  update -> reply latency p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
                f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms, "
                f"mean {statistics.mean(latencies) * 1000:.0f} ms"
            )

            users = [1000 + i for i in range(concurrent)]
            start = time.monotonic()
            for i, user in enumerate(users):
                symbol, tf = PAIRS[i % len(PAIRS)]
                tg.send_message(f"/signal {symbol} {tf}", user_id=user)
            arrivals = await asyncio.gather(*(answered(tg, user, 0, within=300) for user in users))
            elapsed = max(arrivals) - start
            under_load = [a - start for a in arrivals]
            print(f"concurrent: {concurrent} users at once")
            print(
                f"  all answered in {elapsed:.2f} s -> {concurrent / elapsed:.1f} /signal per second; "
                f"latency p50 {percentile(under_load, 0.5):.2f} s, p95 {percentile(under_load, 0.95):.2f} s"
            )
            # while the analyses ran, a cheap command from another user was still answered promptly
            start = time.monotonic()
            for i, user in enumerate(users):
                symbol, tf = PAIRS[i % len(PAIRS)]
                tg.send_message(f"/signal {symbol} {tf}", user_id=user)
            tg.send_message("/explain FVG", user_id=99)
            help_at = await answered(tg, 99, 0)
            await asyncio.gather(*(answered(tg, user, 1, within=300) for user in users))
            print(f"  /explain answered {(help_at - start) * 1000:.0f} ms after being sent amid {concurrent} analyses")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=24)
    args = parser.parse_args()
    asyncio.run(bench(args.repeat, args.concurrent))


if __name__ == "__main__":
    main()
