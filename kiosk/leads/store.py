"""The local SQLite store: leads, consent evidence, scores, the outbox, visit usage and records.

* Schema migrations by ``PRAGMA user_version``: append to ``MIGRATIONS``, never edit one.
* WAL, so the sync task reads while a save writes; ``synchronous=FULL`` so a lead that
  was reported saved survives a power cut.
* A lead, its consent evidence, its score and its outbox rows (the CRM upload, the loan
  officer's e-mail) are written in one transaction: a crash mid-save leaves all or nothing.
* The file is created with mode 0600: it holds personal data.
* Faults are StoreError with SQLite's own message, never one from cleaning up after it (a
  full disk makes SQLite roll back by itself; our ROLLBACK then has nothing to undo). A full
  disk is :class:`~kiosk.errors.StoreFull`: nothing half-written, and saving resumes once
  space returns. A file that is not a database (zero bytes, another format, damaged pages)
  is refused with how to recover: never silently replaced by a new, empty one.
* Numbers are clamped to SQLite's 64-bit range before they reach it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.errors import StoreError
from kiosk.leads.migrations import MIGRATIONS
from kiosk.leads.records import ConsentEvidence, LeadRecord, ScoreRecord, utc_now
from kiosk.leads.sqlfaults import RECOVER, check_file, clamp_float, clamp_int, store_error

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)


class Store:
    """The kiosk's database. One instance per process; not shared across threads."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        """Open (and migrate) the database; ``create=False`` refuses to make a new one (a
        technician's command at a mistyped path must not report an empty kiosk)."""
        self.path = path
        if not create and not path.is_file():
            raise StoreError(f"no database at {path} (store.path; the daemon creates it at its first start)")
        check_file(path)  # an existing file must be a database: never turned into a new, empty one
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                # Create it 0600 before SQLite does, so no moment exists with wider modes.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise store_error(f"cannot open database {path}", exc) from None
        except OSError as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None
        self.conn = conn
        self._tx_lock = threading.RLock()
        try:
            self._migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise store_error(f"cannot open database {path}", exc) from None

    @classmethod
    def open_verified(cls, path: Path, *, create: bool = True) -> Store:
        """Open and :meth:`verify`: the daemon's and ``kiosk sync``'s first look at the file."""
        store = cls(path, create=create)
        try:
            store.verify()
        except StoreError:
            store.close()
            raise
        return store

    def verify(self) -> None:
        """StoreError (with how to recover) when SQLite finds damage (``PRAGMA quick_check``):
        run at the start of a long-lived user of the file (the daemon, ``kiosk sync``)."""
        try:
            rows = self.conn.execute("PRAGMA quick_check(3)").fetchall()
        except sqlite3.Error as exc:
            raise store_error(f"database {self.path}", exc) from None
        if [r[0] for r in rows] != ["ok"]:
            detail = "; ".join(str(r[0]) for r in rows)[:200]
            raise StoreError(f"database {self.path} is damaged ({detail}); {RECOVER}")

    def _migrate(self) -> None:
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        for n, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                for stmt in (s.strip() for s in script.split(";")):
                    if stmt:
                        self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version={n}")
            log.info("database migrated to schema %d", n)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; StoreError for SQLite failures.

        Tools write from worker threads and the kiosk records usage from another: one
        connection carries one transaction at a time, so transactions take turns here
        instead of failing with "cannot start a transaction within a transaction".
        """
        with self._tx_lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise store_error("database busy or unavailable", exc) from None
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                # SQLite may have rolled back by itself (disk full, I/O error): then there is
                # nothing to undo, and the error to report is the first one, not ROLLBACK's.
                if self.conn.in_transaction:
                    try:
                        self.conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        log.debug("rollback after a failed write failed too", exc_info=True)
                if isinstance(exc, sqlite3.Error):
                    raise store_error("database write failed", exc) from None
                raise

    @property
    def schema_version(self) -> int:
        """The applied migration count."""
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def save_lead(
        self,
        lead: LeadRecord,
        consent: ConsentEvidence,
        score: ScoreRecord | None = None,
        outbox: Iterable[tuple[str, dict[str, Any]]] = (),
    ) -> str:
        """Store a lead with its consent evidence, (optional) score and outbox rows, atomically; returns its id.

        ``outbox`` holds further rows about this lead as (kind, payload), e.g. the loan
        officer's e-mail: they commit with the lead or not at all.
        """
        lead_id, now = lead.id, lead.created_at
        with self.transaction():
            self._table("leads").insert(
                {
                    "id": lead_id,
                    "created_at": now,
                    "kiosk_id": lead.kiosk_id,
                    "session_id": lead.session_id,
                    "name": lead.name,
                    "email": lead.email,
                    "phone": lead.phone,
                    "product_type": lead.product_type,
                    "analysis_json": json.dumps(lead.analysis) if lead.analysis is not None else None,
                    "details_json": json.dumps(lead.details) if lead.details is not None else None,
                }
            )
            self._table("consent").insert(
                {
                    "lead_id": lead_id,
                    "disclosure_text": consent.disclosure_text,
                    "disclosure_version": consent.disclosure_version,
                    "channel": consent.channel,
                    "given_at": now,
                    "kiosk_id": lead.kiosk_id,
                    "session_id": lead.session_id,
                    "visitor_words": consent.visitor_words,
                    "phone": consent.phone,
                    "assistant_words": consent.assistant_words,
                    "greeting_words": consent.greeting_words,
                    "visitor_items_json": json.dumps(consent.visitor_items),
                    "status": consent.status,
                    "missing_json": json.dumps(consent.missing),
                }
            )
            if score is not None:
                self._insert_score(lead_id, score, now)
            self.enqueue("lead", lead_id)
            for kind, payload in outbox:
                self.enqueue(kind, lead_id, payload)
        return lead_id

    def fill_visitor_words(self, lead_id: str, item_id: str, text: str) -> None:
        """A visitor transcript that landed after the save takes its place in the evidence."""
        with self.transaction() as conn:
            row = conn.execute("SELECT visitor_items_json FROM consent WHERE lead_id = ?", (lead_id,)).fetchone()
            if row is None or not row[0]:
                return
            items = json.loads(row[0])
            for item in items:
                if item.get("item") == item_id:
                    item["words"] = text
            words = "\n".join(i["words"] for i in items)
            conn.execute(
                "UPDATE consent SET visitor_items_json = ?, visitor_words = ? WHERE lead_id = ?",
                (json.dumps(items), words, lead_id),
            )

    def revoke_consent(
        self,
        lead_id: str,
        words: str,
        mail_kinds: Iterable[str],
        notice: tuple[str, dict[str, Any]],
        *,
        erase: bool = False,
        email_only: bool = False,
    ) -> int:
        """Mark a lead's consent revoked, drop its queued e-mails of ``mail_kinds`` and queue
        ``notice`` (kind, payload) for the CRM under the payload's id, atomically; returns how
        many e-mails were cancelled.

        ``erase`` (the visitor asked to delete their details): a lead not yet uploaded is not
        uploaded at all, and its name, e-mail and phone are cleared here at once; the consent
        row keeps the number and the words, which prove the consent and its withdrawal.
        ``email_only`` (an e-mail unsubscribe): only e-mails stop; the consent to calls stands.
        """
        kinds = list(mail_kinds)
        marks = ",".join("?" * len(kinds))
        with self.transaction() as conn:
            if email_only:
                conn.execute("UPDATE consent SET email_revoked_at = coalesce(email_revoked_at, ?) WHERE lead_id = ?",
                             (utc_now(), lead_id))  # fmt: skip
            else:
                conn.execute(
                    "UPDATE consent SET status = 'revoked', revoked_at = ?, revoked_words = ? WHERE lead_id = ?",
                    (utc_now(), words, lead_id),
                )
            cancelled = conn.execute(
                f"DELETE FROM outbox WHERE ref = ? AND state = 'pending' AND kind IN ({marks})", (lead_id, *kinds)
            ).rowcount
            if erase:
                conn.execute("DELETE FROM outbox WHERE ref = ? AND kind = 'lead' AND state != 'sent'", (lead_id,))
                conn.execute(
                    "UPDATE consent SET phone = coalesce(phone, (SELECT phone FROM leads WHERE id = ?)) "
                    "WHERE lead_id = ?", (lead_id, lead_id),
                )  # fmt: skip
                conn.execute(
                    "UPDATE leads SET name = NULL, email = NULL, phone = NULL, purged_at = ? WHERE id = ?",
                    (utc_now(), lead_id),
                )
                conn.execute("UPDATE outbox SET payload_json = NULL WHERE ref = ? AND state = 'sent'", (lead_id,))
            self.enqueue(notice[0], str(notice[1].get("id") or lead_id), notice[1])
        return int(cancelled)

    def save_score(self, lead_id: str, score: ScoreRecord, analysis: dict[str, Any] | None = None) -> None:
        """Add a score to a lead (and, when given, the analysis it was computed on), atomically."""
        with self.transaction() as conn:
            if analysis is not None:
                conn.execute("UPDATE leads SET analysis_json = ? WHERE id = ?", (json.dumps(analysis), lead_id))
            self._insert_score(lead_id, score, utc_now())

    def _insert_score(self, lead_id: str, score: ScoreRecord, now: str) -> None:
        self._table("scores").insert(
            {
                "lead_id": lead_id,
                "created_at": now,
                "total": score.total,
                "disposition": score.disposition,
                "points_json": json.dumps(score.points),
                "reasons_json": json.dumps(score.reasons),
                "rubric_version": score.rubric_version,
            }
        )

    def latest_score(self, lead_id: str) -> dict[str, Any] | None:
        """The newest score row of a lead, or None."""
        rows = self.rows("SELECT * FROM scores WHERE lead_id = ? ORDER BY id DESC LIMIT 1", (lead_id,))
        return rows[0] if rows else None

    def session_lead_ids(self, session_id: str) -> list[str]:
        """Ids of the leads saved in one visit (the CLI resumes a session with these)."""
        rows = self.conn.execute("SELECT id FROM leads WHERE session_id = ? ORDER BY created_at", (session_id,))
        return [str(r[0]) for r in rows]

    def enqueue(self, kind: str, ref: str, payload: dict[str, Any] | None = None) -> None:
        """Add an outbox row (inside the caller's transaction when there is one)."""
        self._table("outbox").insert(
            {
                "kind": kind,
                "ref": ref,
                "created_at": utc_now(),
                "state": "pending",
                "payload_json": json.dumps(payload) if payload is not None else None,
            },
            ignore=True,
        )

    @cached_property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over the store's connection, made at the first write that needs it.

        Only a lead's save (and what it queues) writes through it. A visit without a lead
        never does, so a kiosk that has saved none does not carry sqlite-utils, click,
        dateutil and pluggy (about 3 MB resident; README "Memory"). No sqlite-utils
        plugins: nothing installed beside the kiosk gets to change its connection.
        """
        import sqlite_utils

        return sqlite_utils.Database(self.conn, execute_plugins=False)

    def _table(self, name: str) -> sqlite_utils.db.Table:
        return self.db.table(name)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """The rows of a SELECT as dicts, under the store's lock.

        Not ``sqlite_utils``' ``query()``: that wraps every SELECT in a SAVEPOINT on the one
        shared connection, which a tool thread's read then interleaves with another
        thread's transaction ("no such savepoint").
        """
        with self._tx_lock:
            cursor = self.conn.execute(sql, params)
            keys = [d[0] for d in cursor.description]
            return [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]

    def lead(self, lead_id: str) -> dict[str, Any] | None:
        """One lead row, or None."""
        rows = self.rows("SELECT * FROM leads WHERE id = ?", (lead_id,))
        return rows[0] if rows else None

    def consent(self, lead_id: str) -> dict[str, Any] | None:
        """The consent evidence of a lead, or None."""
        rows = self.rows("SELECT * FROM consent WHERE lead_id = ?", (lead_id,))
        return rows[0] if rows else None

    def count(self, table: str, where: str = "1=1", params: tuple[Any, ...] = ()) -> int:
        """Row count of a table (status lines, tests)."""
        if table not in ("leads", "consent", "scores", "outbox", "usage", "visits"):
            raise ValueError(f"unknown table {table}")
        return int(self.conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0])

    def record_usage(self, session_id: str, day: str, tokens: dict[str, int], cost_usd: float) -> None:
        """Upsert one visit's cumulative usage (token counts by kind, and cost)."""
        now = utc_now()
        counts = {kind: clamp_int(n) for kind, n in tokens.items()}  # a huge count must not end the visit
        row = {"session_id": session_id, "day": day, "updated_at": now, "cost_usd": clamp_float(cost_usd), **counts}
        names = ", ".join(_column(c) for c in row)
        updates = ", ".join(f"{_column(c)} = excluded.{_column(c)}" for c in row if c != "session_id")
        with self.transaction():
            # One upsert in SQL: every visit records its usage, and sqlite-utils is left for
            # a lead's save (see ``db``).
            self.conn.execute(
                f"INSERT INTO usage (started_at, {names}) VALUES (?, {', '.join('?' * len(row))}) "
                f"ON CONFLICT(session_id) DO UPDATE SET {updates}",
                (now, *row.values()),
            )

    def usage_for_day(self, day: str) -> tuple[int, float]:
        """Total tokens and cost of a (local) day, for the daily budget."""
        tokens, cost = self.conn.execute(
            "SELECT coalesce(sum(input_tokens + output_tokens), 0), coalesce(sum(cost_usd), 0) "
            "FROM usage WHERE day = ?",
            (day,),
        ).fetchone()
        return int(tokens), float(cost)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _column(name: str) -> str:
    """A column name quoted for SQL (the names come from the code, never from a visitor)."""
    return '"' + name.replace('"', '""') + '"'
