"""Build the bundled sample data (data/sample/) from the shared Binance candle files.

Run once by maintainers: ``python scripts/make_sample_data.py ../shared/data/binance``.
Keeps the six Binance kline columns the analysis needs, trims long intraday series to recent
history so the bundle stays a few MB, and gzips each file. Values are copied verbatim (no
rounding, no resampling); see data/sample/PROVENANCE.md.
"""

from __future__ import annotations

import csv
import gzip
import sys
from datetime import UTC, datetime
from pathlib import Path

COLUMNS = ["open_time", "open", "high", "low", "close", "volume"]
# Interval -> first kept open time (UTC). Intervals not listed are kept whole.
TRIM_FROM = {
    "1h": datetime(2024, 1, 1, tzinfo=UTC),
    "15m": datetime(2026, 1, 1, tzinfo=UTC),
}


def build(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*-*.csv")):
        interval = path.stem.split("-", 1)[1]
        start_ms = int(TRIM_FROM[interval].timestamp() * 1000) if interval in TRIM_FROM else 0
        out = target / f"{path.name}.gz"
        with path.open(newline="") as src, gzip.open(out, "wt", newline="", compresslevel=9) as dst:
            reader = csv.DictReader(src)
            writer = csv.writer(dst)
            writer.writerow(COLUMNS)
            rows = 0
            for row in reader:
                if int(row["open_time"]) >= start_ms:
                    writer.writerow(row[c] for c in COLUMNS)
                    rows += 1
        print(f"{out.name}: {rows} rows, {out.stat().st_size} bytes")


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(__file__).resolve().parent.parent / "data" / "sample")
