"""SQLite's faults in the kiosk's words, and numbers SQLite can hold.

* A fault is a StoreError with SQLite's own message; a full disk is
  :class:`~kiosk.errors.StoreFull` (nothing was written; saving resumes once space returns).
* A file that is not a database (zero bytes, another format, damaged pages) is refused with
  how to recover: never silently replaced by a new, empty one.
* Numbers are clamped to SQLite's 64-bit range before they reach it.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from kiosk.errors import StoreError, StoreFull

SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_FULL = 13
INT_MAX = 2**63 - 1
RECOVER = (
    "stop the kiosk, move the file aside (keep it: `sqlite3 FILE .recover` may rescue its leads) "
    "and start again for a new, empty database, or restore a backup"
)


def clamp_int(value: object) -> int:
    """A count as SQLite can store it: an int in [0, 2**63 - 1] (junk counts as 0)."""
    try:
        number: int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
    return min(max(number, 0), INT_MAX)


def clamp_float(value: object) -> float:
    """A non-negative finite float (NaN, infinities and junk become 0 or the largest float)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if math.isnan(number) or number < 0:
        return 0.0
    return min(number, 1e300)


def store_error(what: str, exc: sqlite3.Error) -> StoreError:
    """SQLite's error as ours: StoreFull when the disk is full, a StoreError naming it otherwise."""
    if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == SQLITE_FULL:
        return StoreFull(f"{what}: the disk is full ({exc}); nothing was written")
    if "malformed" in str(exc) or "not a database" in str(exc):
        return StoreError(f"{what}: the database file is damaged ({exc}); {RECOVER}")
    return StoreError(f"{what}: {exc}")


def check_file(path: Path) -> None:
    """StoreError (with how to recover) when ``path`` exists but cannot be a SQLite database."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot open database {path}: {exc.strerror or exc}") from None
    if not head:
        raise StoreError(f"database {path} is an empty (0-byte) file, not the kiosk's database; {RECOVER}")
    if head != SQLITE_HEADER:
        raise StoreError(f"database {path} is not a SQLite database (damaged or overwritten); {RECOVER}")
