"""Soak: a simulated day (or more) of scans, monitoring, reports and user requests at high replay speed.

    python bench/bench_soak.py [--hours 24] [--speed 480] [--subscribers 5]

The real PTB Application talks to the local Bot API server (tests/fake_telegram.py); market data is the bundled
sample replayed on a clock tied to the wall clock (``--speed`` simulated seconds per real second), so a slow job
makes the next ones late exactly as it would in production. The bot's own job functions (chat.jobs) run on the
production schedule in simulated time: the watchlist scan every AUTO_SIGNAL_INTERVAL_MINUTES, the monitor every
MONITOR_INTERVAL_SECONDS, the outbox every 3 s, the daily report at DAILY_REPORT_TIME, the cache cleanup hourly;
like PTB's JobQueue (coalesce, one instance) jobs run concurrently, a job still running when it is due again
skips that run, and a job later than its own period runs once for the missed runs (both counted as coalesced).
GATE=off, so every signal the scan finds is tracked, broadcast to the subscribers and monitored. Each simulated
hour one subscriber asks /signal (a chart).

Printed: one sample per simulated hour (RSS, open file descriptors, live matplotlib figures, pyplot figures,
outbox), then per job: runs, coalesced (missed) runs, lateness p50/max in simulated seconds, and the drift of
RSS / fds / figures between the first and last quarter of the run after a two-hour warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
import types
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from matplotlib import pyplot  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from chat import jobs, telegram_app  # noqa: E402
from chat.services import build_services  # noqa: E402
from config import Settings  # noqa: E402
from market.sample_source import SampleSource  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402

START = pd.Timestamp("2026-03-02 00:00", tz="UTC")
ADMIN = 1001
FIRST_SUBSCRIBER = 5001


class SimClock:
    """Simulated time = START + (wall seconds since ``begin``) * speed."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.began = time.monotonic()

    def now(self) -> pd.Timestamp:
        return START + pd.Timedelta(seconds=(time.monotonic() - self.began) * self.speed)

    def wall_until(self, moment: pd.Timestamp) -> float:
        return max((moment - self.now()).total_seconds() / self.speed, 0.0)


@dataclass
class Job:
    name: str
    period: pd.Timedelta
    due: pd.Timestamp
    run: object  # async callable
    lateness: list[float] = field(default_factory=list)  # simulated seconds
    coalesced: int = 0
    wall: list[float] = field(default_factory=list)
    task: asyncio.Task | None = None

    def advance(self, now: pd.Timestamp) -> None:
        """The next due time after ``now``; the runs skipped meanwhile are coalesced (PTB's coalesce=True)."""
        self.due += self.period
        while self.due <= now:
            self.due += self.period
            self.coalesced += 1


async def timed(job: Job) -> None:
    began = time.perf_counter()
    try:
        await job.run()
    finally:
        job.wall.append(time.perf_counter() - began)


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_figures() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Figure))


def sample(clock: SimClock, app, jobs_: list[Job]) -> dict:
    store = app.bot_data["services"].store
    counts = store.outbox_counts()
    return {
        "sim": clock.now().strftime("%m-%d %H:%M"),
        "rss_mib": round(rss_mib(), 1),
        "fds": open_fds(),
        "figures": live_figures(),
        "pyplot": len(pyplot.get_fignums()),
        "pending": counts.pending,
        "sent": counts.sent,
        "positions": len(store.all_positions()),
    }


def make_jobs(app, settings: Settings, clock: SimClock, tg: FakeTelegram, subscribers: list[int]) -> list[Job]:
    context = types.SimpleNamespace(application=app, bot_data=app.bot_data, job_queue=None)
    asked = [0]

    async def scan() -> None:
        await jobs.scan_now(app)

    async def ask() -> None:  # a subscriber's /signal through Telegram: a chart rendered and sent
        user = subscribers[asked[0] % len(subscribers)]
        pair = ("BTCUSDT 1h", "ETHUSDT 4h", "SOLUSDT 1h")[asked[0] % 3]
        asked[0] += 1
        tg.send_message(f"/signal {pair}", user_id=user)

    report_at = START.normalize() + pd.Timedelta(hours=settings.daily_report_time.hour)
    return [
        Job("scan", pd.Timedelta(minutes=settings.auto_signal_interval_minutes), START, scan),
        Job(
            "monitor", pd.Timedelta(seconds=settings.monitor_interval_seconds), START, lambda: jobs.job_monitor(context)
        ),
        Job("outbox", pd.Timedelta(seconds=jobs.OUTBOX_INTERVAL_SECONDS), START, lambda: jobs.drain_outbox(app)),
        Job("report", pd.Timedelta(days=1), report_at, lambda: jobs.job_report(context)),
        Job("cache cleanup", pd.Timedelta(hours=1), START, lambda: jobs.job_cache_cleanup(context)),
        Job("user /signal", pd.Timedelta(hours=1), START + pd.Timedelta(minutes=7), ask),
    ]


async def soak(
    hours: float, speed: float, n_subscribers: int, *, quiet: bool = False
) -> tuple[list[dict], list[Job], Counter]:
    """Run the soak; the hourly samples, the jobs (with their lateness) and the Bot API calls by method."""
    data = Path(tempfile.mkdtemp(prefix="soak-"))
    clock = SimClock(speed)
    market = SampleSource(ROOT / "data" / "sample", clock=clock.now)
    with FakeTelegram() as tg:
        settings = Settings(
            telegram_bot_token=tg.token,
            telegram_api_base_url=tg.base_url,
            admin_ids=frozenset({ADMIN}),
            market_data="sample",
            bot_data_dir=data,
            gate="off",
            watchlist=("BTCUSDT", "ETHUSDT", "SOLUSDT"),
            signal_rate_limit=(1000, 60),
        )
        app = telegram_app.build_application(
            settings,
            services_factory=lambda: build_services(settings, mode="telegram", market=market),
            jobs=False,  # the schedule below runs in simulated time
            rate_limiter=False,
        )
        subscribers = [FIRST_SUBSCRIBER + i for i in range(n_subscribers)]
        async with telegram_app.running(app, poll_timeout=1):
            for user in subscribers:
                tg.send_message("/start", user_id=user)
            schedule = make_jobs(app, settings, clock, tg, subscribers)
            end = START + pd.Timedelta(hours=hours)
            samples = [sample(clock, app, schedule)]
            next_sample = START + pd.Timedelta(hours=1)
            show = (lambda line: None) if quiet else (lambda line: print(line, flush=True))
            show(" | ".join(samples[0]))
            while (now := clock.now()) < end:
                job = min(schedule, key=lambda j: j.due)
                if now < job.due:
                    await asyncio.sleep(clock.wall_until(min(job.due, next_sample)))
                    if clock.now() >= next_sample:
                        samples.append(sample(clock, app, schedule))
                        show(" | ".join(str(v) for v in samples[-1].values()))
                        next_sample += pd.Timedelta(hours=1)
                    continue
                if job.task is not None and not job.task.done():  # max_instances=1: this run is skipped
                    job.coalesced += 1
                else:
                    job.lateness.append((now - job.due).total_seconds())
                    job.task = asyncio.create_task(timed(job))
                job.advance(clock.now())
            await asyncio.gather(*(j.task for j in schedule if j.task is not None))
        calls = Counter(call.method for call in tg.calls())
    # after the application stopped (no chart in progress): what outlived the run
    samples.append(
        {"sim": "stopped", "fds": open_fds(), "figures": live_figures(), "pyplot": len(pyplot.get_fignums())}
    )
    return samples, schedule, calls


WARM_UP_SAMPLES = 2  # the first simulated hours load the candles, open connections and files, fill caches


def drift(samples: list[dict], key: str) -> str:
    """The mean of ``key`` over the first and the last quarter of the samples after the warm-up (in the run)."""
    samples = [s for s in samples if "rss_mib" in s][WARM_UP_SAMPLES:] or samples
    quarter = max(len(samples) // 4, 1)
    first = statistics.mean(s[key] for s in samples[:quarter])
    last = statistics.mean(s[key] for s in samples[-quarter:])
    return f"{key}: first quarter {first:.1f}, last quarter {last:.1f}, max {max(s[key] for s in samples)}"


def summarize(samples: list[dict], schedule: list[Job], hours: float, speed: float, calls: Counter) -> None:
    print(f"\n{hours:g} simulated hours at {speed:g}x ({hours * 3600 / speed:.0f} s wall)")
    for key in ("rss_mib", "fds", "figures", "pyplot"):
        print("  " + drift(samples, key))
    print(f"  after the application stopped: {samples[-1]}")
    print(f"  Bot API calls: {dict(sorted(calls.items()))}")
    print("job            runs  coalesced  late p50 (sim s)  late max (sim s)  wall p50 (s)  wall max (s)")
    for job in schedule:
        late = job.lateness or [0.0]
        wall = job.wall or [0.0]
        print(
            f"{job.name:<14} {len(job.lateness):>4}  {job.coalesced:>9}  {statistics.median(late):>16.1f}"
            f"  {max(late):>16.1f}  {statistics.median(wall):>12.3f}  {max(wall):>12.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    parser.add_argument("--speed", type=float, default=480.0, help="simulated seconds per real second")
    parser.add_argument("--subscribers", type=int, default=5)
    args = parser.parse_args()
    samples, schedule, calls = asyncio.run(soak(args.hours, args.speed, args.subscribers))
    summarize(samples, schedule, args.hours, args.speed, calls)


if __name__ == "__main__":
    main()
