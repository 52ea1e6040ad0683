"""Crash-safe JSON files: the one place that writes and reads the bot's JSON stores.

- :func:`atomic_write_json` writes a temporary file in the same directory, flushes and fsyncs it, ``os.replace``s
  it over the target and fsyncs the directory: after a kill at any moment the file holds either the old or the new
  complete content, never a torn mix.
- :func:`load_json` reads a store; a missing file gives the default; an unreadable or corrupt one (bad JSON, or
  rejected by the caller's ``validate``) is moved aside to ``<name>.corrupt-<UTC timestamp>`` with a warning and the
  default is returned with ``status=CORRUPT`` so the caller can rebuild it. Never raises for bad content.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class LoadStatus(StrEnum):
    OK = "ok"
    MISSING = "missing"
    CORRUPT = "corrupt"


@dataclass(frozen=True, slots=True)
class LoadResult:
    data: Any
    status: LoadStatus
    quarantined: Path | None = None  # where a corrupt file was moved


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload`` atomically and durably (temp file + fsync + os.replace + dir fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 1) -> None:
    """Serialise ``data`` as UTF-8 JSON and write it with :func:`atomic_write_bytes`."""
    payload = json.dumps(data, ensure_ascii=False, indent=indent, allow_nan=False).encode("utf-8")
    atomic_write_bytes(path, payload)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not support fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def quarantine(path: str | Path, *, now: datetime | None = None) -> Path:
    """Move ``path`` aside to ``<path>.corrupt-<YYYYmmddTHHMMSSZ>`` (numbered if taken) and return the new path."""
    path = Path(path)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    _fsync_dir(path.parent)
    return target


def load_json(
    path: str | Path,
    *,
    default: Callable[[], Any],
    validate: Callable[[Any], Any] | None = None,
    now: datetime | None = None,
) -> LoadResult:
    """Read the JSON store at ``path``.

    ``validate(data)`` may return a normalised value or raise (``ValueError``, ``TypeError``, ``KeyError``) to
    reject the content. Missing -> ``default()`` with MISSING; corrupt/rejected -> quarantined, ``default()`` with
    CORRUPT and a warning naming both files.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return LoadResult(default(), LoadStatus.MISSING)
    except OSError as exc:
        return _corrupt(path, f"unreadable ({exc})", default, now)
    try:
        data = json.loads(raw.decode("utf-8"))
        if validate is not None:
            data = validate(data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return _corrupt(path, f"corrupt ({type(exc).__name__}: {str(exc)[:120]})", default, now)
    return LoadResult(data, LoadStatus.OK)


def _corrupt(path: Path, why: str, default: Callable[[], Any], now: datetime | None) -> LoadResult:
    try:
        moved = quarantine(path, now=now)
    except OSError as exc:
        logger.warning("%s is %s and could not be moved aside (%s); starting from an empty store", path, why, exc)
        return LoadResult(default(), LoadStatus.CORRUPT)
    logger.warning("%s is %s; kept aside as %s and the store is rebuilt", path, why, moved.name)
    return LoadResult(default(), LoadStatus.CORRUPT, moved)
