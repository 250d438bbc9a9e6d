"""The outbox's queries: what is due, what was sent, what is dead, and the sync status for ops.

Rows move ``pending -> sent`` or ``pending -> dead`` (and ``dead -> pending`` by
``kiosk leads retry``); nothing else writes ``state``. A pending e-mail to a visitor who
opted out is deleted (:func:`cancel`, as withdrawing consent does). Times are UTC ISO 8601 strings with
seconds, like every timestamp in the store, so they compare as text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kiosk.leads.store import Store

PENDING, SENT, DEAD = "pending", "sent", "dead"
LEAD_KINDS = ("lead",)
MAIL_KINDS = ("email_visitor", "email_officer")
DAILY_KIND, HEARTBEAT_KIND = "daily_stats", "heartbeat"
REVOCATION_KIND = "consent_revocation"  # kiosk.consent-revocation/1: a withdrawn consent, for the CRM
# Documents sent one by one with their own id: the fleet's (no personal data) and revocations.
DOC_KINDS = (DAILY_KIND, HEARTBEAT_KIND, REVOCATION_KIND)


def iso(when: datetime) -> str:
    """UTC ISO 8601 with whole seconds (the store's timestamp format)."""
    return when.astimezone(UTC).isoformat(timespec="seconds")


def iso_ceil(when: datetime) -> str:
    """Like :func:`iso` but rounded up, so a "not before" time is never early."""
    whole = when.replace(microsecond=0)
    return iso(whole if whole == when else whole + timedelta(seconds=1))


@dataclass(frozen=True)
class OutboxRow:
    """One outbox entry to deliver."""

    id: int
    kind: str
    ref: str
    attempts: int
    payload: dict[str, Any] | None


def due(
    store: Store, kinds: Sequence[str], now: datetime, limit: int, *, force: bool, horizon_s: float
) -> list[OutboxRow]:
    """Pending rows of ``kinds`` that may be tried at ``now``, oldest first.

    A ``next_attempt_at`` further than ``horizon_s`` ahead cannot come from our own backoff:
    the wall clock was wrong when it was written (a Pi has no RTC), so the row is due now.
    ``force`` ignores the schedule (a technician's ``kiosk sync --once --force``).
    """
    marks = ",".join("?" * len(kinds))
    sql = f"SELECT id, kind, ref, attempts, payload_json FROM outbox WHERE state = ? AND kind IN ({marks})"
    params: list[Any] = [PENDING, *kinds]
    if not force:
        sql += " AND (next_attempt_at IS NULL OR next_attempt_at <= ? OR next_attempt_at > ?)"
        params += [iso(now), iso(now + timedelta(seconds=horizon_s))]
    sql += " ORDER BY id LIMIT ?"
    params.append(limit)
    rows = store.conn.execute(sql, params).fetchall()
    return [OutboxRow(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else None) for r in rows]


def next_due_in(store: Store, now: datetime) -> float | None:
    """Seconds until the earliest scheduled pending row (0 when one is due), None when none waits."""
    row = store.conn.execute("SELECT min(coalesce(next_attempt_at, '')) FROM outbox WHERE state = ?", [PENDING])
    first = row.fetchone()[0]
    if first is None:
        return None
    if first == "":
        return 0.0
    return max(0.0, (datetime.fromisoformat(first) - now).total_seconds())


def _ids(rows: Iterable[OutboxRow]) -> list[int]:
    return [r.id for r in rows]


def _update(store: Store, sql: str, head: list[Any], ids: list[int]) -> None:
    with store.transaction() as conn:
        conn.execute(f"{sql} WHERE id IN ({','.join('?' * len(ids))})", [*head, *ids])


def mark_sent(store: Store, rows: Sequence[OutboxRow], now: datetime) -> None:
    """Delivered: never sent again."""
    _update(store, "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1", [iso(now)], _ids(rows))


def mark_retry(store: Store, rows: Sequence[OutboxRow], not_before: datetime, reason: str) -> None:
    """Failed in a way that may pass: try again at ``not_before``."""
    _update(
        store,
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?",
        [iso_ceil(not_before), reason],
        _ids(rows),
    )


def mark_dead(store: Store, rows: Sequence[OutboxRow], reason: str) -> None:
    """Refused for good: kept with its reason until someone re-queues it."""
    _update(
        store,
        "UPDATE outbox SET state = 'dead', attempts = attempts + 1, next_attempt_at = NULL, last_error = ?",
        [reason],
        _ids(rows),
    )


def cancel(store: Store, rows: Sequence[OutboxRow]) -> None:
    """Drop pending rows that must not go any more (an e-mail to a visitor who opted out),
    as withdrawing consent drops them."""
    ids = _ids(rows)
    with store.transaction() as conn:
        conn.execute(f"DELETE FROM outbox WHERE state = 'pending' AND id IN ({','.join('?' * len(ids))})", ids)


def requeue(store: Store, refs: Sequence[str] = (), *, all_dead: bool = False) -> int:
    """Dead rows back to pending (by lead id / ref, or all); returns how many."""
    sql = "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = NULL WHERE state = 'dead'"
    params: list[Any] = []
    if not all_dead:
        if not refs:
            return 0
        sql += f" AND ref IN ({','.join('?' * len(refs))})"
        params = list(refs)
    with store.transaction() as conn:
        return conn.execute(sql, params).rowcount


def set_state(store: Store, **values: str) -> None:
    """Remember status values (last success, last error, ...) for ``kiosk status``."""
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            list(values.items()),
        )


def get_state(store: Store) -> dict[str, str]:
    """All remembered status values."""
    return dict(store.conn.execute("SELECT key, value FROM sync_state").fetchall())


@dataclass(frozen=True)
class SyncStatus:
    """What ops need to know about the outbox.

    ``pending_leads`` is THE number of leads waiting for upload: systemd's ``STATUS=`` line,
    the status file and ``kiosk status`` all show this one count.
    """

    pending_leads: int
    dead_leads: int
    pending_mail: int
    dead_mail: int
    last_success_at: str | None
    last_error: str | None
    last_error_at: str | None
    last_purge_at: str | None
    crm_paused: str | None = None  # why CRM delivery is paused (kiosk.leads.channels), None when not
    smtp_paused: str | None = None

    def line(self) -> str:
        """One short line for ``kiosk status`` and systemd ``STATUS=`` (no personal data)."""
        text = f"{self.pending_leads} lead(s) waiting for upload"
        if self.dead_leads:
            text += f", {self.dead_leads} dead"
        if self.pending_mail or self.dead_mail:
            text += f"; e-mail {self.pending_mail} pending, {self.dead_mail} dead"
        text += f"; last sync {self.last_success_at}" if self.last_success_at else "; never synced"
        failing = self.last_error_at and (not self.last_success_at or self.last_error_at > self.last_success_at)
        if failing and self.last_error:
            text += f"; error: {self.last_error[:80]}"
        for name, why in (("CRM", self.crm_paused), ("e-mail", self.smtp_paused)):
            if why:
                text += f"; {name} PAUSED until the configuration changes: {why[:80]}"
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def sync_status(conn: sqlite3.Connection) -> SyncStatus:
    """The outbox's counts and the syncer's last success and error: cheap and read-only, so
    ``kiosk status`` can run it on a read-only connection while the daemon writes."""
    counts: dict[tuple[str, str], int] = {
        (str(kind), str(state)): int(n)
        for kind, state, n in conn.execute("SELECT kind, state, count(*) FROM outbox GROUP BY 1, 2").fetchall()
    }

    def of(kinds: tuple[str, ...], state: str) -> int:
        return sum(counts.get((k, state), 0) for k in kinds)

    has_state = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sync_state'").fetchone()
    state = dict(conn.execute("SELECT key, value FROM sync_state").fetchall()) if has_state else {}
    return SyncStatus(
        pending_leads=of(LEAD_KINDS, PENDING),
        dead_leads=of(LEAD_KINDS, DEAD),
        pending_mail=of(MAIL_KINDS, PENDING),
        dead_mail=of(MAIL_KINDS, DEAD),
        last_success_at=state.get("last_success_at"),
        last_error=state.get("last_error"),
        last_error_at=state.get("last_error_at"),
        last_purge_at=state.get("last_purge_at"),
        crm_paused=state.get("crm_paused") or None,
        smtp_paused=state.get("smtp_paused") or None,
    )


def open_read_only(path: Path) -> sqlite3.Connection:
    """The database without write access (``kiosk status`` next to the running daemon)."""
    if not path.is_file():
        raise FileNotFoundError(f"no database at {path}")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
