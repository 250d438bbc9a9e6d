"""The outbox consumer: leads to the lender's CRM over HTTPS, e-mails over SMTP.

Delivery is at-least-once from here and exactly-once at the receiver: a lead's id is its
``Idempotency-Key`` and the receiver stores each id once (``scripts/lead-receiver`` shows
how). A row is marked sent only after the receiver said 2xx, so a crash or power cut at
any moment loses nothing; it can only send a lead again, which the receiver ignores.

Each channel (CRM, SMTP) has one retry loop: after a retryable failure (network error,
time-out, 408, 429, 5xx) the channel pauses with exponential backoff and full jitter, or
for exactly the server's ``Retry-After``; the failed rows carry that "not before" time in
the database so it also holds across restarts. Any other 4xx is final: the row goes to
``dead`` with its reason and a ``KIOSK_EVENT=sync_dead_letter`` journal entry. A fault of
the channel itself (401/403, a redirect, an SMTP login refused) pauses that channel until
the configuration changes (:mod:`kiosk.leads.channels`); its rows stay pending.

Every request has an overall deadline (``timeout_s``, :mod:`kiosk.leads.deadline`), and
stopping ``run()`` cuts the one in flight at once: a server that drips its answer can hold
neither a pass nor the daemon's shutdown.

The wire format is :mod:`kiosk.leads.crm`'s. The fleet's documents (daily stats,
heartbeat: :mod:`kiosk.fleet.documents`) take the same channel after the leads, one
signed POST each, their payload being the body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from kiosk import __version__
from kiosk.config import NotifySettings, RetentionSettings, Secrets, SyncSettings
from kiosk.errors import backoff_delay
from kiosk.leads import crm
from kiosk.leads import outbox as ob
from kiosk.leads.channels import Channel, Clock, DrainReport, SystemClock, fingerprint
from kiosk.leads.deadline import Aborter
from kiosk.leads.http import HttpTransport, Transport
from kiosk.leads.mail import Email, EmailPayloadError, MailAuthRefused, Mailer, MailRefused, SmtpOnFirstSend
from kiosk.leads.optout import mail_stopped
from kiosk.leads.retention import purge
from kiosk.leads.store import Store
from kiosk.logs import event

log = logging.getLogger(__name__)

PURGE_EVERY_S = 24 * 3600.0
__all__ = ["Clock", "DrainReport", "Syncer", "SystemClock"]
STOP_WAIT_S = 3.0  # after the cut, how long a stopping run() waits for its pass's thread


# -- the consumer ----------------------------------------------------------------------


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
        self.aborter = Aborter()  # run() stopping cuts the request in flight
        self.transport = transport
        if transport is None and sync.endpoint:
            self.transport = HttpTransport(sync.endpoint, sync.timeout_s, sync.ca_bundle, aborter=self.aborter)
        self.mailer = mailer
        if mailer is None and notify.smtp_host:
            self.mailer = SmtpOnFirstSend(notify, secrets.smtp_password, kiosk_id, aborter=self.aborter)
        self.on_pass = on_pass  # called in the event loop after each pass of run(), e.g. to update STATUS=
        password = secrets.smtp_password.get_secret_value() if secrets.smtp_password else ""
        self._crm = Channel("crm", fingerprint(sync.endpoint, self._token, self._secret))
        self._smtp = Channel("smtp", fingerprint(notify.smtp_host, notify.smtp_port, notify.smtp_username, password))
        for channel in (self._crm, self._smtp):
            channel.restore(store)
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
        """Deliver everything that is due (``force``: everything pending, ignoring holds and
        pauses: a technician's probe)."""
        report = DrainReport()
        if not self.problems():
            self._drain_leads(report, force)
            self._drain_documents(report, force)
        if self.mailer is not None:
            self._drain_mail(report, force)
        return report

    def _held(self, channel: Channel, now: datetime, force: bool) -> bool:
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
            doc = crm.lead_document(self.store, row.ref)
            if doc is None:
                self._dead(self._crm, [row], "lead data missing or purged; nothing to send", report)
            else:
                docs.append(doc)
                sendable.append(row)
        if not sendable:
            return True
        outcome, reason, retry_after = self._post(docs)
        if outcome == crm.Outcome.DEAD and len(sendable) > 1:
            # One bad lead must not take its batch-mates down with it: try each alone.
            return all(self._deliver_leads([row], report) for row in sendable)
        return self._settle(sendable, outcome, reason, retry_after, report)

    def _settle(
        self, rows: list[ob.OutboxRow], outcome: str, reason: str, retry_after: float | None, report: DrainReport
    ) -> bool:
        """Apply the CRM's answer to the rows it was about; False when the channel must wait
        (paused on refused credentials, or a retry is due later)."""
        if outcome == crm.Outcome.OK:
            self._sent(self._crm, rows, report)
            return True
        if outcome == crm.Outcome.DEAD:
            self._dead(self._crm, rows, reason, report)
            return True
        if outcome == crm.Outcome.PAUSE:
            self._crm.pause(self.store, reason, self.clock.now(), self.sync.backoff_cap_s)
            report.paused.append(f"crm: {reason}")
            return False
        self._retry(self._crm, rows, reason, retry_after, report)
        return False

    def _next_due(self, channel: Channel, kinds: tuple[str, ...], force: bool) -> ob.OutboxRow | None:
        """The channel's next due row of ``kinds`` (one at a time), or None: nothing due, the
        channel held, or the syncer stopping."""
        if self._halt.is_set():
            return None
        now = self.clock.now()
        if self._held(channel, now, force):
            return None
        rows = ob.due(self.store, kinds, now, 1, force=force, horizon_s=self._horizon_s)
        return rows[0] if rows else None

    def _drain_documents(self, report: DrainReport, force: bool) -> None:
        while (row := self._next_due(self._crm, ob.DOC_KINDS, force)) is not None:
            rows = [row]
            now = self.clock.now()
            if not row.payload or not isinstance(row.payload.get("id"), str):
                self._dead(self._crm, rows, "document without a payload or id; nothing to send", report)
                continue
            body = json.dumps(row.payload, separators=(",", ":")).encode()
            outcome, reason, retry_after = self._send(body, row.payload["id"], now)
            if not self._settle(rows, outcome, reason, retry_after, report):
                return

    def _post(self, docs: list[dict[str, Any]]) -> tuple[str, str, float | None]:
        now = self.clock.now()
        body = json.dumps(crm.build_batch(self.kiosk_id, docs, now), separators=(",", ":")).encode()
        return self._send(body, ",".join(d["id"] for d in docs), now)

    def _send(self, body: bytes, key: str, now: datetime) -> tuple[str, str, float | None]:
        """One signed POST of ``body``: (outcome, reason, retry-after seconds)."""
        assert self.transport is not None
        timestamp = str(int(now.timestamp()))
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            crm.TIMESTAMP_HEADER: timestamp,
            crm.SIGNATURE_HEADER: crm.sign(self._secret, timestamp, body),
            "User-Agent": f"kiosk/{__version__}",
        }
        try:
            reply = self.transport.post(body, headers)
        except (OSError, TimeoutError) as exc:
            return crm.Outcome.RETRY, crm.failure_reason(f"network: {type(exc).__name__}: {exc}"), None
        return crm.classify_reply(reply, now)

    def _drain_mail(self, report: DrainReport, force: bool) -> None:
        assert self.mailer is not None
        while (row := self._next_due(self._smtp, ob.MAIL_KINDS, force)) is not None:
            rows = [row]
            now = self.clock.now()
            if mail_stopped(self.store, row.kind, row.ref):  # opted out after it was queued
                ob.cancel(self.store, rows)
                fields = event("email_cancelled", outbox_id=row.id, kind=row.kind, ref=row.ref)
                log.info("outbox row %d (%s %s) cancelled: the visitor opted out", row.id, row.kind, row.ref,
                         extra=fields)  # fmt: skip
                continue
            try:
                email = Email.from_payload(row.payload)
            except EmailPayloadError as exc:
                self._dead(self._smtp, [row], crm.failure_reason(str(exc)), report)
                continue
            try:
                self.mailer.send(email, message_key=f"{row.kind}.{row.ref}")
            except MailAuthRefused as exc:
                reason = crm.failure_reason(f"{exc}; check notify.smtp_username and the smtp_password credential")
                self._smtp.pause(self.store, reason, now, self.sync.backoff_cap_s)
                report.paused.append(f"smtp: {reason}")
                return
            except MailRefused as exc:
                self._dead(self._smtp, [row], crm.failure_reason(f"smtp: {exc}"), report)
                continue
            except OSError as exc:  # smtplib.SMTPException is an OSError too
                self._retry(self._smtp, [row], crm.failure_reason(f"smtp: {type(exc).__name__}: {exc}"), None, report)
                return
            self._sent(self._smtp, [row], report)

    # -- bookkeeping ---------------------------------------------------------------------

    def _sent(self, channel: Channel, rows: list[ob.OutboxRow], report: DrainReport) -> None:
        now = self.clock.now()
        ob.mark_sent(self.store, rows, now)
        ob.set_state(self.store, last_success_at=ob.iso(now))
        channel.failures, channel.hold_until = 0, None
        channel.resume(self.store)
        report.sent += len(rows)
        # A heartbeat every few minutes would drown the journal: its delivery is DEBUG.
        level = logging.DEBUG if rows[0].kind == ob.HEARTBEAT_KIND else logging.INFO
        log.log(
            level, "%s: delivered %d %s row(s)", channel.name, len(rows), rows[0].kind,
            extra=event("sync_sent", channel=channel.name, count=len(rows), kind=rows[0].kind),
        )  # fmt: skip

    def _retry(
        self, channel: Channel, rows: list[ob.OutboxRow], reason: str, retry_after: float | None, report: DrainReport
    ) -> None:
        if self._halt.is_set():  # cut short by stopping, not failed: the rows stay due as they were
            return
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

    def _dead(self, channel: Channel, rows: list[ob.OutboxRow], reason: str, report: DrainReport) -> None:
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
        self._halt.clear()
        self.aborter.reset()
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
            # A pass still running in its thread: cut its request now (its rows stay as they
            # were, to be sent again) and wait a little, so the store is not closed under its
            # feet; the daemon's shutdown never waits on a server.
            self._halt.set()
            self.aborter.abort()
            if self._work is not None and not self._work.done():
                await asyncio.wait([self._work], timeout=STOP_WAIT_S)
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
