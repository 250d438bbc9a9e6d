"""The outbox consumer: leads to the lender's CRM over HTTPS, e-mails over SMTP.

Delivery is at-least-once from here and exactly-once at the receiver: a lead's id is its
``Idempotency-Key`` and the receiver stores each id once (``scripts/lead-receiver`` shows
how). A row is marked sent only after the receiver said 2xx, so a crash or power cut at
any moment loses nothing; it can only send a lead again, which the receiver ignores.

Each channel (CRM, SMTP) has one retry loop: after a retryable failure (network error,
time-out, 408, 429, 5xx) the channel pauses with exponential backoff and full jitter, or
for exactly the server's ``Retry-After``; the failed rows carry that "not before" time in
the database so it also holds across restarts. Any other 4xx is final: the row goes to
``dead`` with its reason and a ``KIOSK_EVENT=sync_dead_letter`` journal entry.

Wire format (``kiosk/schemas/lead-batch.schema.json``)::

    POST <endpoint>
    Authorization: Bearer <sync_token>
    Content-Type: application/json
    Idempotency-Key: <lead id>[,<lead id>...]   (the batch's lead ids, in body order)
    X-Kiosk-Timestamp: <unix seconds>
    X-Kiosk-Signature: v1=<hex HMAC-SHA256(sync_signing_secret, "<timestamp>." + body)>
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from kiosk import __version__
from kiosk.config import NotifySettings, RetentionSettings, Secrets, SyncSettings
from kiosk.errors import backoff_delay
from kiosk.leads import outbox as ob
from kiosk.leads.http import HttpReply, HttpTransport, Transport
from kiosk.leads.mail import Email, EmailPayloadError, Mailer, MailRefused, SmtpMailer
from kiosk.leads.retention import purge
from kiosk.leads.store import Store
from kiosk.logs import event, redact

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429})
SIGNATURE_HEADER = "X-Kiosk-Signature"
TIMESTAMP_HEADER = "X-Kiosk-Timestamp"
PURGE_EVERY_S = 24 * 3600.0


class Clock(Protocol):
    """Wall-clock UTC time for schedules kept in the database and for signatures."""

    def now(self) -> datetime:
        """The current UTC time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)


# -- pure policy -----------------------------------------------------------------------


def is_retryable_status(status: int) -> bool:
    """408, 425, 429 and 5xx may pass later; any other 4xx will not."""
    return status in RETRYABLE_STATUS or status >= 500


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value: ``v1=`` + hex HMAC-SHA256 over ``timestamp.body``."""
    return "v1=" + hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _reason(text: str) -> str:
    """A failure reason fit for the database, logs and STATUS=: short, no personal data."""
    return redact(" ".join(text.split()))[:200]


# -- payload ---------------------------------------------------------------------------


def lead_document(store: Store, lead_id: str) -> dict[str, Any] | None:
    """One lead as the schema's ``lead``; None when its data is gone or incomplete."""
    lead = store.lead(lead_id)
    consent = store.consent(lead_id)
    if lead is None or consent is None or lead["purged_at"] is not None:
        return None
    score = store.conn.execute(
        "SELECT total, disposition, points_json, reasons_json, rubric_version, created_at FROM scores "
        "WHERE lead_id = ? ORDER BY id DESC LIMIT 1",
        [lead_id],
    ).fetchone()
    return {
        "id": lead["id"],
        "created_at": lead["created_at"],
        "session_id": lead["session_id"],
        "product_type": lead["product_type"],
        "contact": {"name": lead["name"], "email": lead["email"], "phone": lead["phone"]},
        "analysis": json.loads(lead["analysis_json"]) if lead["analysis_json"] else None,
        "consent": {
            k: consent[k]
            for k in ("disclosure_text", "disclosure_version", "channel", "given_at", "kiosk_id", "session_id")
        }
        | {"visitor_words": consent["visitor_words"]},
        "score": None
        if score is None
        else {
            "total": score[0],
            "disposition": score[1],
            "points": json.loads(score[2]),
            "reasons": json.loads(score[3]),
            "rubric_version": score[4],
            "created_at": score[5],
        },
    }


def build_batch(kiosk_id: str, leads: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, Any]:
    """The request body (see the JSON Schema)."""
    return {
        "schema": "kiosk.lead-batch/1",
        "kiosk_id": kiosk_id,
        "app_version": __version__,
        "sent_at": ob.iso(now),
        "leads": list(leads),
    }


# -- the consumer ----------------------------------------------------------------------


@dataclass
class _Channel:
    """One retry loop: consecutive failures and the pause they caused."""

    name: str
    failures: int = 0
    hold_until: datetime | None = None


@dataclass
class DrainReport:
    """What one pass over the outbox did."""

    sent: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing failed."""
        return not self.retried and not self.dead


class _Outcome:
    OK, RETRY, DEAD = "ok", "retry", "dead"


class Syncer:
    """Delivers the outbox. Give it its own :class:`Store` (its own SQLite connection).

    ``drain()`` is one synchronous pass (CLI, tests); ``run()`` is the daemon's loop: a pass
    every ``interval_s``, right after ``kick()``, and the retention purge once a day.
    """

    def __init__(
        self,
        store: Store,
        kiosk_id: str,
        sync: SyncSettings,
        notify: NotifySettings,
        retention: RetentionSettings,
        secrets: Secrets,
        *,
        clock: Clock | None = None,
        rand: Callable[[], float] | None = None,
        transport: Transport | None = None,
        mailer: Mailer | None = None,
        on_pass: Callable[[DrainReport], None] | None = None,
    ) -> None:
        self.store = store
        self.kiosk_id = kiosk_id
        self.sync = sync
        self.retention = retention
        self.clock = clock or SystemClock()
        self.rand = rand or random.SystemRandom().random
        self._token = secrets.sync_token.get_secret_value() if secrets.sync_token else ""
        self._secret = secrets.sync_signing_secret.get_secret_value().encode() if secrets.sync_signing_secret else b""
        self.transport = transport
        if transport is None and sync.endpoint:
            self.transport = HttpTransport(sync.endpoint, sync.timeout_s, sync.ca_bundle)
        self.mailer = mailer
        if mailer is None and notify.smtp_host:
            self.mailer = SmtpMailer(notify, secrets.smtp_password, kiosk_id)
        self.on_pass = on_pass  # called in the event loop after each pass of run(), e.g. to update STATUS=
        self._crm = _Channel("crm")
        self._smtp = _Channel("smtp")
        self._halt = threading.Event()
        self._work: asyncio.Future[Any] | None = None  # the pass running in a worker thread
        # status() reads through its own connection: one sqlite3 connection must not be used
        # by two threads at once, and the passes run in a worker thread.
        self._reader = Store(store.path)
        self._kicked: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._horizon_s = max(sync.backoff_cap_s, sync.max_retry_after_s) + 60.0

    def problems(self) -> list[str]:
        """Why leads cannot be uploaded (empty when they can)."""
        found = []
        if self.transport is None:
            found.append("sync.endpoint is not set")
        if not self._token:
            found.append("the sync_token credential is not set")
        if not self._secret:
            found.append("the sync_signing_secret credential is not set")
        return found

    # -- one pass ----------------------------------------------------------------------

    def drain(self, *, force: bool = False) -> DrainReport:
        """Deliver everything that is due (``force``: everything pending, ignoring pauses)."""
        self._halt.clear()
        report = DrainReport()
        if not self.problems():
            self._drain_leads(report, force)
        if self.mailer is not None:
            self._drain_mail(report, force)
        return report

    def _held(self, channel: _Channel, now: datetime, force: bool) -> bool:
        hold = channel.hold_until
        # A hold further ahead than our longest pause means the clock jumped back: ignore it.
        return not force and hold is not None and now < hold <= now + timedelta(seconds=self._horizon_s)

    def _drain_leads(self, report: DrainReport, force: bool) -> None:
        while not self._halt.is_set():
            now = self.clock.now()
            if self._held(self._crm, now, force):
                return
            rows = ob.due(self.store, ob.LEAD_KINDS, now, self.sync.batch_size, force=force, horizon_s=self._horizon_s)
            if not rows or not self._deliver_leads(rows, report):
                return

    def _deliver_leads(self, rows: list[ob.OutboxRow], report: DrainReport) -> bool:
        """POST one batch; False when the channel must pause."""
        docs: list[dict[str, Any]] = []
        sendable: list[ob.OutboxRow] = []
        for row in rows:
            doc = lead_document(self.store, row.ref)
            if doc is None:
                self._dead(self._crm, [row], "lead data missing or purged; nothing to send", report)
            else:
                docs.append(doc)
                sendable.append(row)
        if not sendable:
            return True
        outcome, reason, retry_after = self._post(docs)
        if outcome == _Outcome.OK:
            self._sent(self._crm, sendable, report)
            return True
        if outcome == _Outcome.DEAD:
            if len(sendable) > 1:
                # One bad lead must not take its batch-mates down with it: try each alone.
                return all(self._deliver_leads([row], report) for row in sendable)
            self._dead(self._crm, sendable, reason, report)
            return True
        self._retry(self._crm, sendable, reason, retry_after, report)
        return False

    def _post(self, docs: list[dict[str, Any]]) -> tuple[str, str, float | None]:
        assert self.transport is not None
        now = self.clock.now()
        body = json.dumps(build_batch(self.kiosk_id, docs, now), separators=(",", ":")).encode()
        timestamp = str(int(now.timestamp()))
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "Idempotency-Key": ",".join(d["id"] for d in docs),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            "User-Agent": f"kiosk/{__version__}",
        }
        try:
            reply = self.transport.post(body, headers)
        except (OSError, TimeoutError) as exc:
            return _Outcome.RETRY, _reason(f"network: {type(exc).__name__}: {exc}"), None
        return classify_reply(reply, now)

    def _drain_mail(self, report: DrainReport, force: bool) -> None:
        assert self.mailer is not None
        while not self._halt.is_set():
            now = self.clock.now()
            if self._held(self._smtp, now, force):
                return
            rows = ob.due(self.store, ob.MAIL_KINDS, now, 1, force=force, horizon_s=self._horizon_s)
            if not rows:
                return
            row = rows[0]
            try:
                email = Email.from_payload(row.payload)
            except EmailPayloadError as exc:
                self._dead(self._smtp, [row], _reason(str(exc)), report)
                continue
            try:
                self.mailer.send(email, message_key=f"{row.kind}.{row.ref}")
            except MailRefused as exc:
                self._dead(self._smtp, [row], _reason(f"smtp: {exc}"), report)
                continue
            except OSError as exc:  # smtplib.SMTPException is an OSError too
                self._retry(self._smtp, [row], _reason(f"smtp: {type(exc).__name__}: {exc}"), None, report)
                return
            self._sent(self._smtp, [row], report)

    # -- bookkeeping ---------------------------------------------------------------------

    def _sent(self, channel: _Channel, rows: list[ob.OutboxRow], report: DrainReport) -> None:
        now = self.clock.now()
        ob.mark_sent(self.store, rows, now)
        ob.set_state(self.store, last_success_at=ob.iso(now))
        channel.failures, channel.hold_until = 0, None
        report.sent += len(rows)
        log.info(
            "%s: delivered %d %s row(s)", channel.name, len(rows), rows[0].kind,
            extra=event("sync_sent", channel=channel.name, count=len(rows)),
        )  # fmt: skip

    def _retry(
        self, channel: _Channel, rows: list[ob.OutboxRow], reason: str, retry_after: float | None, report: DrainReport
    ) -> None:
        now = self.clock.now()
        channel.failures += 1
        if retry_after is not None:
            delay = min(retry_after, self.sync.max_retry_after_s)
        else:
            delay = backoff_delay(channel.failures, self.sync.backoff_base_s, self.sync.backoff_cap_s, self.rand)
        channel.hold_until = now + timedelta(seconds=delay)
        ob.mark_retry(self.store, rows, channel.hold_until, reason)
        ob.set_state(self.store, last_error=f"{channel.name}: {reason}", last_error_at=ob.iso(now))
        report.retried += len(rows)
        report.errors.append(reason)
        log.warning(
            "%s: delivery failed (%s); retrying in %.0f s", channel.name, reason, delay,
            extra=event("sync_retry", channel=channel.name, reason=reason, delay_s=round(delay, 1),
                        failures=channel.failures),
        )  # fmt: skip

    def _dead(self, channel: _Channel, rows: list[ob.OutboxRow], reason: str, report: DrainReport) -> None:
        now = self.clock.now()
        ob.mark_dead(self.store, rows, reason)
        ob.set_state(self.store, last_error=f"{channel.name}: {reason}", last_error_at=ob.iso(now))
        report.dead += len(rows)
        report.errors.append(reason)
        for row in rows:
            log.error(
                "%s: outbox row %d (%s %s) dead-lettered: %s", channel.name, row.id, row.kind, row.ref, reason,
                extra=event("sync_dead_letter", channel=channel.name, outbox_id=row.id, kind=row.kind, ref=row.ref,
                            reason=reason),
            )  # fmt: skip

    # -- the daemon's loop ---------------------------------------------------------------

    def kick(self) -> None:
        """Ask for a pass now (after a save). Safe from any thread, before or during ``run``."""
        loop, kicked = self._loop, self._kicked
        if loop is not None and kicked is not None:
            loop.call_soon_threadsafe(kicked.set)

    async def run(self) -> None:
        """Deliver until cancelled: every ``interval_s``, on ``kick()``, and purge once a day."""
        self._loop = asyncio.get_running_loop()
        self._kicked = asyncio.Event()
        next_purge = self._loop.time()
        try:
            while True:
                if self._loop.time() >= next_purge:
                    next_purge = self._loop.time() + PURGE_EVERY_S
                    try:
                        await self._in_thread(self.purge)
                    except Exception:  # e.g. disk full: keep delivering; tomorrow's purge catches up
                        log.exception("retention purge failed", extra=event("retention_error"))
                self._kicked.clear()
                try:
                    report: DrainReport = await self._in_thread(self.drain)
                except Exception:  # a failing pass must not end the daemon; the next one may pass
                    log.exception("sync pass failed", extra=event("sync_error"))
                    report = DrainReport(errors=["sync pass failed"])
                if self.on_pass is not None:
                    self.on_pass(report)
                wait = min(self.sync.interval_s, next_purge - self._loop.time())
                due = await self._in_thread(ob.next_due_in, self.store, self.clock.now())
                if due is not None:
                    wait = min(wait, max(due, 1.0))
                try:
                    async with asyncio.timeout(max(wait, 0.0)):
                        await self._kicked.wait()
                except TimeoutError:
                    pass
        finally:
            # A pass still running in its thread stops after its current request (bounded by
            # timeout_s); wait for it, so the store is never closed under its feet.
            self._halt.set()
            if self._work is not None and not self._work.done():
                await asyncio.wait([self._work])
            self._loop = None

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        assert self._loop is not None
        self._work = self._loop.run_in_executor(None, func, *args)
        return await asyncio.shield(self._work)

    def purge(self) -> None:
        """Apply the retention schedule now."""
        now = self.clock.now()
        purge(self.store, self.retention, now)
        ob.set_state(self.store, last_purge_at=ob.iso(now))

    def status(self) -> ob.SyncStatus:
        """Pending/dead counts, last success, last error; call from one thread (the event loop)."""
        return ob.sync_status(self._reader.conn)

    def close(self) -> None:
        """Close the syncer's store (after ``run()`` returned)."""
        self.store.close()
        self._reader.close()


def classify_reply(reply: HttpReply, now: datetime) -> tuple[str, str, float | None]:
    """(outcome, reason, retry-after seconds) for an HTTP response."""
    if 200 <= reply.status < 300:
        return _Outcome.OK, "", None
    reason = _reason(f"HTTP {reply.status}: {reply.body[:200].decode('utf-8', 'replace')}")
    if is_retryable_status(reply.status):
        return _Outcome.RETRY, reason, parse_retry_after(reply.headers.get("retry-after"), now)
    return _Outcome.DEAD, reason, None
