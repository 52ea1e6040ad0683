"""ICT Signal Bot: entry point and composition root.

    python bot.py                      Telegram bot when TELEGRAM_BOT_TOKEN is set, else console mode
    python bot.py console              console mode: the bot's commands typed in the terminal
    python bot.py console --replay     the demo on its own: the bundled market an hour a minute, signals and alerts
    python bot.py signal SYMBOL [TF]   one analysis (--at TIME, --chart FILE, --json)
    python bot.py backtest SYMBOL TF   replay history through the engine and position logic
    python bot.py evaluate SYMBOLS TFS walk-forward evidence per setup, net of costs (writes evidence.json)
    python bot.py train                train the ML models from the journal (--from-backtest for a cold start)
    python bot.py --version            the version (also /version in Telegram)

Exit status: 0 success, 2 bad arguments or configuration (one line on stderr), 1 runtime failure.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from chat import __version__  # the package's __init__ only: no Telegram import
from config import ConfigError, Settings

logger = logging.getLogger("bot")
OFFLINE_FALLBACK_COMMANDS = frozenset({"signal", "backtest", "evaluate", "train"})


class UsageError(Exception):
    """Bad command-line arguments: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line instead of argparse's usage dump
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bot.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"ICT Signal Bot {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    con = sub.add_parser("console", help="console mode: type bot commands in the terminal")
    con.add_argument(
        "--replay",
        nargs="?",
        type=float,
        const=60.0,
        metavar="SPEED",
        help="replay demo: the bundled market SPEED times fast (default 60: an hour a minute), scans and alerts run",
    )
    sig = sub.add_parser("signal", help="analyse one symbol and print the signal or why there is none")
    sig.add_argument("symbol", help="Binance symbol, e.g. BTCUSDT")
    sig.add_argument("timeframe", nargs="?", default="1h", help="Binance interval (default 1h)")
    sig.add_argument("--at", metavar="TIME", help="analyse as of the candle closing at or before TIME (ISO, UTC)")
    sig.add_argument("--chart", metavar="FILE", help="write the chart PNG here")
    sig.add_argument("--json", action="store_true", help="print the result as one JSON object")
    bt = sub.add_parser("backtest", help="replay history through the engine and the position logic")
    bt.add_argument("symbol", help="symbol or comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
    bt.add_argument("timeframe", help="Binance interval, e.g. 1h")
    bt.add_argument("--start", metavar="DATE", help="first candle (ISO date, UTC)")
    bt.add_argument("--end", metavar="DATE", help="last candle (ISO date, UTC)")
    bt.add_argument(
        "--journal",
        metavar="FILE",
        help="journal file to write (default: BOT_DATA_DIR/backtest_journal.json)",
    )
    bt.add_argument("--equity", metavar="FILE", help="equity-curve PNG (default: BOT_DATA_DIR/backtest_equity.png)")
    bt.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    bt.add_argument("--fee", type=float, help="fee per side in percent (default FEE_PCT)")
    bt.add_argument("--slippage", type=float, help="slippage in percent (default SLIPPAGE_PCT)")
    bt.add_argument("--all-signals", action="store_true", help="every signal, not only those >= MIN_CONFIDENCE")
    bt.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler for several symbols, e.g. tcp://host:8786")
    bt.add_argument("--fast", action="store_true", help="alias, kept for old scripts: the one mode is exact and fast")
    ev = sub.add_parser("evaluate", help="walk-forward evidence per setup, net of costs, against random entries")
    ev.add_argument("symbols", help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
    ev.add_argument("timeframes", help="comma-separated timeframes, e.g. 1h,4h")
    ev.add_argument("--start", metavar="DATE", help="start of the run, training included (default: 2 years before end)")
    ev.add_argument("--end", metavar="DATE", help="end of the run (default: now, or the end of the sample data)")
    ev.add_argument("--train-days", type=int, default=180, help="training window in days (default 180)")
    ev.add_argument("--test-days", type=int, default=30, help="test window in days (default 30)")
    ev.add_argument("--fee", type=float, help="fee per side in percent (default FEE_PCT)")
    ev.add_argument("--slippage", type=float, help="slippage in percent (default SLIPPAGE_PCT)")
    ev.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786")
    ev.add_argument("--json", action="store_true", help="print the report as one JSON object")
    tr = sub.add_parser("train", help="train the ML models from the journal")
    tr.add_argument("--from-backtest", action="store_true", help="first backtest the sample data to create outcomes")
    tr.add_argument("--json", action="store_true", help="print the training report as one JSON object")
    tr.add_argument("--fast", action="store_true", help="alias, kept for old scripts: the backtest has one mode")
    return parser


def run_command(command: str | None, args: argparse.Namespace, settings: Settings) -> int:
    """Run one sub-command (None: the Telegram bot). Each feature module owns its ``main(args, settings)``.

    The imports are local on purpose: each sub-command loads only its own layer (the Telegram application with
    matplotlib costs about 0.8 s that ``signal``, ``backtest`` and ``train`` do not need).
    """
    if command in OFFLINE_FALLBACK_COMMANDS:  # no network: the bundled data, as console mode does (one line)
        from market.sample_source import offline_fallback

        settings = offline_fallback(settings, lambda line: print(line, file=sys.stderr))
    if command == "signal":
        from chat.signal_cli import main as run
    elif command == "backtest":
        from research.backtest import main as run
    elif command == "evaluate":
        from research.evaluate import main as run
    elif command == "train":
        from ml_engine import main as run
    elif command == "console":
        from chat.console import main as run
    else:
        from chat.telegram_app import main as run
    return run(args, settings)


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "apscheduler", "matplotlib", "PIL", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(args.verbose)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    command = args.command
    if command is None and not settings.telegram_bot_token:
        command = "console"
    try:
        return run_command(command, args, settings)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
