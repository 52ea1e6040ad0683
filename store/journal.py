"""The trading journal (``trading_journal.json``) and its aggregate statistics (``bot_stats.json``).

Journal file format (UTF-8 JSON, written atomically by :mod:`storage`)::

    {"version": 1, "records": [
        {"id": "<signal id>", "position_id": 12, "recorded_at": "2025-01-06T12:00:00Z",
         "signal": {...Signal.to_json()...}, "features": {"name": value, ...},
         "outcome": null | {...position_manager.Outcome.to_json()...}},
        ...]}

One record per tracked signal, in the order they were sent; the outcome is filled in when the position closes.
``bot_stats.json`` holds :meth:`Stats.to_json` and is rewritten with every change (it is derived, so a corrupt one
is simply recomputed).

Statistics definitions (closed = a filled position that closed; EXPIRED positions never traded and are counted
apart): R is the NET R (after fees and slippage, ``tracking.costs``); win = R > 0, loss = R < 0, break-even =
R == 0 (to 1e-9); win rate = wins / closed * 100; average R = total R / closed; profit factor = sum of winning R /
|sum of losing R| (None without losses); ``total_r_gross`` = the same trades before costs. An outcome recorded
before costs existed (no ``r_net``) is charged the default costs on its single exit (:func:`outcome_r`).

``Journal(path)``: ``path`` is either a directory (then ``trading_journal.json`` and ``bot_stats.json`` inside it)
or a journal file name (then stats go to ``<stem>_stats.json`` next to it unless ``stats_path`` is given); the
backtest uses the same class with its own file. A corrupt journal is quarantined and rebuilt from
``positions.db`` when one is given or sits next to the default ``trading_journal.json``.
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.prices import format_price
from engine.signal_model import Signal, iso_utc
from store.storage import LoadStatus, atomic_write_json, load_json
from tracking.costs import DEFAULT_COSTS, Costs, Exit, trade_r

logger = logging.getLogger(__name__)

JOURNAL_FILE = "trading_journal.json"
STATS_FILE = "bot_stats.json"
FORMAT_VERSION = 1
EPS = 1e-9


# ---------------------------------------------------------------------------------------------------------------
# Statistics (pure)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bucket:
    """Aggregates over a set of journal records."""

    signals: int = 0  # records (tracked signals)
    open: int = 0  # no outcome yet
    expired: int = 0  # closed without a fill
    closed: int = 0  # filled and closed
    wins: int = 0
    losses: int = 0
    breakevens: int = 0
    total_r: float = 0.0  # net
    total_r_gross: float = 0.0  # the same trades before costs
    gross_win_r: float = 0.0
    gross_loss_r: float = 0.0  # <= 0
    best_r: float | None = None
    worst_r: float | None = None

    @property
    def win_rate(self) -> float | None:
        return 100.0 * self.wins / self.closed if self.closed else None

    @property
    def avg_r(self) -> float | None:
        return self.total_r / self.closed if self.closed else None

    @property
    def profit_factor(self) -> float | None:
        return self.gross_win_r / -self.gross_loss_r if self.gross_loss_r < -EPS else None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(win_rate=_round(self.win_rate), avg_r=_round(self.avg_r), profit_factor=_round(self.profit_factor))
        for key in ("total_r", "total_r_gross", "gross_win_r", "gross_loss_r", "best_r", "worst_r"):
            out[key] = _round(out[key])
        return out


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True, slots=True)
class Stats:
    overall: Bucket
    by_symbol: tuple[tuple[str, Bucket], ...]
    by_timeframe: tuple[tuple[str, Bucket], ...]
    by_direction: tuple[tuple[str, Bucket], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "overall": self.overall.to_json(),
            "by_symbol": {k: b.to_json() for k, b in self.by_symbol},
            "by_timeframe": {k: b.to_json() for k, b in self.by_timeframe},
            "by_direction": {k: b.to_json() for k, b in self.by_direction},
        }


def outcome_r(
    outcome: Mapping[str, Any], signal: Mapping[str, Any] | None = None, costs: Costs = DEFAULT_COSTS
) -> tuple[float, float]:
    """(gross R, net R) of a filled outcome. Outcomes since costs exist carry both; an older one (gross
    ``r_multiple``, one exit of the whole position) is charged ``costs`` on that exit when its signal is known:
    slippage on a market entry and on any exit but TP3, fees on both sides."""
    gross = float(outcome.get("r_gross", outcome.get("r_multiple")) or 0.0)
    if outcome.get("r_net") is not None:
        return gross, float(outcome["r_net"])
    try:
        sign = 1 if str(signal.get("direction")) == "long" else -1
        exit_ = Exit(float(outcome["exit_price"]), 1.0, outcome.get("reason") != "TP3")
        _, net = trade_r(
            sign=sign,
            entry=float(signal["entry"]),
            sl=float(signal["sl"]),
            fill=float(outcome["fill_price"]),
            exits=[exit_],
            costs=costs,
            market_entry=_is_market_entry(signal),
        )
    except (AttributeError, KeyError, TypeError, ValueError):  # no signal or an incomplete record: as recorded
        return gross, gross
    return gross, net


def _is_market_entry(signal: Mapping[str, Any]) -> bool:
    low, high = (signal.get("entry_zone") or [None, None])[:2]
    return low is not None and low == high


def outcome_class(outcome: Mapping[str, Any] | None, signal: Mapping[str, Any] | None = None) -> str:
    """``open``, ``expired``, ``win``, ``loss`` or ``breakeven`` for a record's outcome (by net R)."""
    if not outcome:
        return "open"
    if outcome.get("reason") == "EXPIRED" or outcome.get("fill_price") is None:
        return "expired"
    r = outcome_r(outcome, signal)[1]
    return "win" if r > EPS else "loss" if r < -EPS else "breakeven"


def record_r(record: Mapping[str, Any]) -> tuple[float, float] | None:
    """(gross R, net R) of a journal record's filled outcome; None when open or expired."""
    outcome = record.get("outcome")
    if outcome_class(outcome) in ("open", "expired"):
        return None
    return outcome_r(outcome, record.get("signal"))


def _add(bucket: Bucket, record: Mapping[str, Any]) -> Bucket:
    outcome = record.get("outcome")
    kind = outcome_class(outcome, record.get("signal"))
    b = dict(asdict(bucket))
    b["signals"] += 1
    if kind in ("open", "expired"):
        b[kind] += 1
        return Bucket(**b)
    gross, r = outcome_r(outcome, record.get("signal"))
    b["closed"] += 1
    b[{"win": "wins", "loss": "losses", "breakeven": "breakevens"}[kind]] += 1
    b["total_r"] += r
    b["total_r_gross"] += gross
    if r > 0:
        b["gross_win_r"] += r
    else:
        b["gross_loss_r"] += r
    b["best_r"] = r if b["best_r"] is None else max(b["best_r"], r)
    b["worst_r"] = r if b["worst_r"] is None else min(b["worst_r"], r)
    return Bucket(**b)


def bucket_of(records: Iterable[Mapping[str, Any]]) -> Bucket:
    out = Bucket()
    for record in records:
        out = _add(out, record)
    return out


def compute_stats(records: Iterable[Mapping[str, Any]]) -> Stats:
    """Aggregate journal records overall and per symbol, timeframe and direction."""
    overall = Bucket()
    groups: dict[str, dict[str, Bucket]] = {"symbol": {}, "timeframe": {}, "direction": {}}
    for record in records:
        overall = _add(overall, record)
        sig = record.get("signal") or {}
        for key, group in groups.items():
            name = str(sig.get(key) or "?")
            group[name] = _add(group.get(name, Bucket()), record)
    return Stats(
        overall=overall,
        by_symbol=tuple(sorted(groups["symbol"].items())),
        by_timeframe=tuple(sorted(groups["timeframe"].items())),
        by_direction=tuple(sorted(groups["direction"].items())),
    )


# ---------------------------------------------------------------------------------------------------------------
# The journal store
# ---------------------------------------------------------------------------------------------------------------


def _validate(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        records = data
    elif isinstance(data, dict) and isinstance(data.get("records"), list):
        records = data["records"]
    else:
        raise ValueError("expected an object with a 'records' list")
    if not all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in records):
        raise ValueError("every journal record needs an 'id'")
    return records


class Journal:
    """The journal and stats files; thread-safe; every change is written atomically before the call returns."""

    def __init__(
        self,
        path: str | Path,
        *,
        stats_path: str | Path | None = None,
        positions_db: str | Path | None = None,
        clock: Any = None,
    ) -> None:
        path = Path(path)
        if path.suffix.lower() != ".json":
            path = path / JOURNAL_FILE
        self.path = path
        default_stats = STATS_FILE if path.name == JOURNAL_FILE else f"{path.stem}_stats.json"
        self.stats_path = Path(stats_path) if stats_path else path.with_name(default_stats)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._batch_depth = 0
        self._dirty = False
        loaded = load_json(self.path, default=list, validate=_validate)
        self._records: list[dict[str, Any]] = loaded.data
        self._index = {r["id"]: i for i, r in enumerate(self._records)}
        self.rebuilt = False
        if loaded.status is LoadStatus.CORRUPT:
            db = Path(positions_db) if positions_db else path.with_name("positions.db")
            if (positions_db or path.name == JOURNAL_FILE) and db.exists():
                self._rebuild_from_db(db)
            self._save()
        stats = load_json(self.stats_path, default=dict)
        if stats.status is not LoadStatus.OK or stats.data.get("overall") != self.stats().overall.to_json():
            self._save_stats()

    # -- reading --------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def records(self, last: int | None = None) -> list[dict[str, Any]]:
        """Copies of the records, oldest first (the last ``last`` only, when given)."""
        with self._lock:
            chosen = self._records[-last:] if last else self._records
            return [dict(r) for r in chosen]

    def get(self, signal_id: str) -> dict[str, Any] | None:
        with self._lock:
            i = self._index.get(signal_id)
            return dict(self._records[i]) if i is not None else None

    def stats(self) -> Stats:
        with self._lock:
            return compute_stats(self._records)

    # -- writing --------------------------------------------------------------------------------------------------

    def record_signal(self, signal: Signal, *, position_id: int | None = None, at: datetime | None = None) -> bool:
        """Add a record for a tracked signal; False (no change) if it is already journaled."""
        return self._insert(signal.to_json(), position_id=position_id, at=at)

    def _insert(self, signal_json: dict[str, Any], *, position_id: int | None, at: datetime | None) -> bool:
        with self._lock:
            sid = signal_json["id"]
            if sid in self._index:
                return False
            record = {
                "id": sid,
                "position_id": position_id,
                "recorded_at": iso_utc(at or self._clock()),
                "signal": signal_json,
                "features": dict(signal_json.get("features") or {}),
                "outcome": None,
            }
            self._records.append(record)
            self._index[sid] = len(self._records) - 1
            self._save()
            return True

    def record_outcome(self, signal_id: str, outcome: Any, *, signal_json: Mapping[str, Any] | None = None) -> bool:
        """Set the outcome of ``signal_id`` (idempotent). A record missing from the journal is created from
        ``signal_json`` when given; returns False when neither exists."""
        data = outcome.to_json() if hasattr(outcome, "to_json") else dict(outcome)
        with self._lock:
            if signal_id not in self._index:
                if signal_json is None:
                    logger.warning("journal has no record for %s; outcome not recorded", signal_id)
                    return False
                self._insert(dict(signal_json), position_id=None, at=None)
            record = self._records[self._index[signal_id]]
            if record.get("outcome") == data:
                return True
            record["outcome"] = data
            self._save()
            return True

    def _rebuild_from_db(self, db: Path) -> None:
        from position_manager import PositionStore  # local: the journal does not otherwise need the store

        store = PositionStore(db)
        try:
            for p in store.all_positions():
                sig = store.signal_json(p.id)
                if sig is None:
                    continue
                self._records.append(
                    {
                        "id": p.signal_id,
                        "position_id": p.id,
                        "recorded_at": iso_utc(p.opened_at),
                        "signal": sig,
                        "features": dict(sig.get("features") or {}),
                        "outcome": p.outcome.to_json() if p.outcome else None,
                    }
                )
                self._index[p.signal_id] = len(self._records) - 1
        finally:
            store.close()
        self.rebuilt = True
        logger.warning("journal %s rebuilt from %s: %d records", self.path, db, len(self._records))

    @contextlib.contextmanager
    def batch(self) -> Iterator[Journal]:
        """Group several changes into one write (at the end of the block); nests."""
        with self._lock:
            self._batch_depth += 1
            try:
                yield self
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0 and self._dirty:
                    self._dirty = False
                    self._save()

    def _save(self) -> None:
        if self._batch_depth:
            self._dirty = True
            return
        atomic_write_json(self.path, {"version": FORMAT_VERSION, "records": self._records})
        self._save_stats()

    def _save_stats(self) -> None:
        data = compute_stats(self._records).to_json()
        data["updated_at"] = iso_utc(self._clock())
        atomic_write_json(self.stats_path, data)

    def close(self) -> None:
        """Nothing is buffered (every change is already on disk); present for the services' uniform close."""


# ---------------------------------------------------------------------------------------------------------------
# Telegram-HTML formatting (pure)
# ---------------------------------------------------------------------------------------------------------------


def _fmt_r(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}R"


def _fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _fmt_pf(bucket: Bucket) -> str:
    pf = bucket.profit_factor
    if pf is None:
        return "∞" if bucket.wins else "—"
    return f"{pf:.2f}"


def _bucket_line(name: str, b: Bucket) -> str:
    return (
        f"<b>{html.escape(name)}</b>: {b.closed} closed, {b.wins}W/{b.losses}L/{b.breakevens}BE, "
        f"win {_fmt_pct(b.win_rate)}, avg {_fmt_r(b.avg_r)}, PF {_fmt_pf(b)}"
    )


def format_stats_html(stats: Stats) -> str:
    """The ``/stats`` message (Telegram HTML, every dynamic string escaped)."""
    o = stats.overall
    if o.signals == 0:
        return "📊 <b>Statistics</b>\nNo tracked signals yet."
    lines = [
        "📊 <b>Statistics</b>",
        f"Signals tracked: {o.signals} (open {o.open}, expired unfilled {o.expired})",
        f"Closed: {o.closed} · wins {o.wins} · losses {o.losses} · break-even {o.breakevens}",
        f"Win rate: {_fmt_pct(o.win_rate)} · average {_fmt_r(o.avg_r)}"
        f" · total {_fmt_r(o.total_r if o.closed else None)}",
        f"Profit factor: {_fmt_pf(o)} · best {_fmt_r(o.best_r)} · worst {_fmt_r(o.worst_r)}",
        f"<i>R is net of fees and slippage; before costs the total was {_fmt_r(o.total_r_gross)}.</i>"
        if o.closed
        else "<i>R is net of fees and slippage.</i>",
    ]
    for title, groups in (
        ("By symbol", stats.by_symbol),
        ("By timeframe", stats.by_timeframe),
        ("By direction", stats.by_direction),
    ):
        lines.append(f"\n<b>{title}</b>")
        lines.extend(_bucket_line(name, b) for name, b in groups)
    return "\n".join(lines)


def format_journal_html(records: list[Mapping[str, Any]], *, n: int = 10, tz: str | ZoneInfo = "UTC") -> str:
    """The ``/journal [N]`` message: the last ``n`` records, newest first."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    chosen = list(records)[-n:][::-1] if n > 0 else []
    if not chosen:
        return "📒 <b>Journal</b>\nNo tracked signals yet."
    lines = [f"📒 <b>Journal</b> (last {len(chosen)})"]
    for r in chosen:
        sig = r.get("signal") or {}
        when = _local(sig.get("time"), zone)
        head = (
            f"{html.escape(str(sig.get('symbol', '?')))} {html.escape(str(sig.get('timeframe', '?')))} "
            f"{html.escape(str(sig.get('direction', '?')).upper())} @ {_price(sig.get('entry'))} · {when}"
        )
        outcome = r.get("outcome")
        kind = outcome_class(outcome, sig)
        if kind == "open":
            tail = "open"
        elif kind == "expired":
            tail = "expired (entry not reached)"
        else:
            tail = (
                f"{html.escape(str(outcome.get('reason')))} at {_price(outcome.get('exit_price'))}, "
                f"{_fmt_r(outcome_r(outcome, sig)[1])} net ({outcome.get('pnl_pct', 0):+.2f}%)"
            )
        pid = r.get("position_id")
        lines.append(f"• {'#' + str(pid) + ' ' if pid else ''}{head} → <i>{tail}</i>")
    return "\n".join(lines)


def _price(value: Any) -> str:
    return format_price(value) if isinstance(value, int | float) else "—"


def _local(text: Any, zone: ZoneInfo) -> str:
    if not isinstance(text, str):
        return "?"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return html.escape(text)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
