"""The fleet's side of the database: visit records and state time written, and the figures
the report, the daily document, the metrics and ``kiosk status`` read.

Writes go through :class:`~kiosk.leads.store.Store` (its transactions); reads take a plain
``sqlite3.Connection``, so ``kiosk report`` and ``kiosk status`` can use a read-only one
beside the running daemon. Days are local days (``YYYY-MM-DD``), as budgets count them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from kiosk.fleet.visits import VisitRecord
from kiosk.leads.outbox import DAILY_KIND, HEARTBEAT_KIND
from kiosk.leads.store import Store

_COLUMNS = (
    "id, day, started_at, ended_at, duration_s, end_reason, stage, stages_json, tools_json, topics_json, "
    "consent_offers, consent_declines, input_tokens, output_tokens, cost_usd, first_audio_ms, warm"
)


def save_visit(store: Store, record: VisitRecord) -> None:
    """Store one visit's record (once; a second write of the same visit replaces it)."""
    row = record.row()
    marks = ", ".join("?" * len(row))
    with store.transaction() as conn:
        conn.execute(f"INSERT OR REPLACE INTO visits ({', '.join(row)}) VALUES ({marks})", list(row.values()))


def add_state_time(store: Store, day: str, state: str, seconds: float) -> None:
    """Add ``seconds`` spent in ``state`` (offline, unavailable, error) to a local day."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO state_time (day, state, seconds) VALUES (?, ?, ?) "
            "ON CONFLICT(day, state) DO UPDATE SET seconds = seconds + excluded.seconds",
            (day, state, seconds),
        )


def queue_daily(store: Store, day: str, doc: dict[str, object]) -> bool:
    """Queue a day's stats document once (by day); True when it was not queued before."""
    with store.transaction() as conn:
        before = conn.execute("SELECT count(*) FROM outbox WHERE kind = ? AND ref = ?", (DAILY_KIND, day)).fetchone()
        store.enqueue(DAILY_KIND, day, doc)
    return int(before[0]) == 0


def queue_heartbeat(store: Store, doc_id: str, doc: dict[str, object]) -> None:
    """Queue a heartbeat in place of any earlier one: only the newest is worth sending."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM outbox WHERE kind = ?", (HEARTBEAT_KIND,))
        store.enqueue(HEARTBEAT_KIND, doc_id, doc)


def days_without_document(conn: sqlite3.Connection, first_day: str, before_day: str) -> list[str]:
    """Local days from ``first_day`` up to (not including) ``before_day`` that saw visits,
    spending or downtime and have no daily stats document queued yet, oldest first."""
    rows = conn.execute(
        "SELECT day FROM visits WHERE day >= ?1 AND day < ?2 "
        "UNION SELECT day FROM usage WHERE day >= ?1 AND day < ?2 "
        "UNION SELECT day FROM state_time WHERE day >= ?1 AND day < ?2 "
        "EXCEPT SELECT ref FROM outbox WHERE kind = ?3 ORDER BY 1",
        (first_day, before_day, DAILY_KIND),
    )
    return [str(d) for (d,) in rows.fetchall()]


# -- reading -----------------------------------------------------------------------------


def has_visits(conn: sqlite3.Connection) -> bool:
    """The database has the visits table (schema 5 or later)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'visits'").fetchone() is not None


def visits_between(conn: sqlite3.Connection, first_day: str, last_day: str) -> list[VisitRecord]:
    """Every visit that started on a local day in ``first_day..last_day``, oldest first."""
    cur = conn.execute(
        f"SELECT {_COLUMNS} FROM visits WHERE day BETWEEN ? AND ? ORDER BY started_at, id", (first_day, last_day)
    )
    names = [d[0] for d in cur.description]
    return [VisitRecord.from_row(dict(zip(names, r, strict=True))) for r in cur.fetchall()]


def leads_by_day(conn: sqlite3.Connection, first_day: str, last_day: str) -> dict[str, int]:
    """Leads saved per local day (by the day of the visit that saved them)."""
    rows = conn.execute(
        "SELECT v.day, count(*) FROM leads l JOIN visits v ON v.id = l.session_id "
        "WHERE v.day BETWEEN ? AND ? GROUP BY v.day",
        (first_day, last_day),
    )
    return {str(d): int(n) for d, n in rows.fetchall()}


def cost_by_day(conn: sqlite3.Connection, first_day: str, last_day: str) -> dict[str, float]:
    """Money spent per local day (table ``usage``: what the daily budget counts)."""
    rows = conn.execute(
        "SELECT day, coalesce(sum(cost_usd), 0) FROM usage WHERE day BETWEEN ? AND ? GROUP BY day",
        (first_day, last_day),
    )
    return {str(d): float(c) for d, c in rows.fetchall()}


def state_seconds_by_day(conn: sqlite3.Connection, first_day: str, last_day: str) -> dict[str, dict[str, float]]:
    """Seconds per state per local day (offline, unavailable, error)."""
    out: dict[str, dict[str, float]] = {}
    rows = conn.execute("SELECT day, state, seconds FROM state_time WHERE day BETWEEN ? AND ?", (first_day, last_day))
    for day, state, seconds in rows.fetchall():
        out.setdefault(str(day), {})[str(state)] = float(seconds)
    return out


def first_visit_day(conn: sqlite3.Connection) -> str | None:
    """The local day of the oldest visit record kept."""
    row = conn.execute("SELECT min(day) FROM visits").fetchone()
    return None if row is None or row[0] is None else str(row[0])


# -- totals for the metrics and `kiosk status` ---------------------------------------------


@dataclass(frozen=True)
class Totals:
    """All-time figures (since the records kept began) for the Prometheus textfile."""

    visits_by_reason: dict[str, int] = field(default_factory=dict)
    leads: int = 0
    outbox: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, state) -> rows
    cost_usd: float = 0.0
    first_audio_ms: tuple[float, ...] = ()
    last_success_at: str | None = None


def totals(conn: sqlite3.Connection) -> Totals:
    """Read every all-time figure in one go (cheap: a few aggregate queries)."""
    visits = {str(r): int(n) for r, n in conn.execute("SELECT end_reason, count(*) FROM visits GROUP BY 1")}
    by_kind = conn.execute("SELECT kind, state, count(*) FROM outbox GROUP BY 1, 2")
    outbox = {(str(k), str(s)): int(n) for k, s, n in by_kind}
    first_audio = tuple(
        float(ms) for (ms,) in conn.execute("SELECT first_audio_ms FROM visits WHERE first_audio_ms IS NOT NULL")
    )
    last = conn.execute("SELECT value FROM sync_state WHERE key = 'last_success_at'").fetchone()
    return Totals(
        visits_by_reason=visits,
        leads=int(conn.execute("SELECT count(*) FROM leads").fetchone()[0]),
        outbox=outbox,
        cost_usd=float(conn.execute("SELECT coalesce(sum(cost_usd), 0) FROM usage").fetchone()[0]),
        first_audio_ms=first_audio,
        last_success_at=None if last is None else str(last[0]),
    )


@dataclass(frozen=True)
class Today:
    """One local day at a glance (``kiosk status``, the heartbeat)."""

    visits: int
    leads: int
    cost_usd: float


def today(conn: sqlite3.Connection, day: str) -> Today:
    """Visits, leads and spending of one local day."""
    visits = int(conn.execute("SELECT count(*) FROM visits WHERE day = ?", (day,)).fetchone()[0])
    return Today(visits, leads_by_day(conn, day, day).get(day, 0), cost_by_day(conn, day, day).get(day, 0.0))
