"""A hostile SMTP server (aiosmtpd with STARTTLS and login): it closes the connection at
RCPT or after accepting, answers 4xx and 5xx, answers slowly or a byte at a time, refuses
our login. Each behaviour: the pass ends within its deadline, no e-mail is lost (a well-behaved
server afterwards gets every one), a resent e-mail keeps its Message-ID (so the mailbox folds
it: none stored twice), and the log holds no recipient, name or password."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kiosk.leads import outbox as ob
from kiosk.leads.mail import Email
from kiosk.leads.store import Store
from tests.chaoskit import timed
from tests.mailkit import SMTP_PASSWORD, Inbox, Smtp, mailer_syncer, notify_settings
from tests.synckit import ManualClock

pytestmark = pytest.mark.timeout(120)
MAILS = 3
DEADLINE_S = 1.0
BOUND_S = 3 * DEADLINE_S

Act = Callable[[Any, Any, Any], Awaitable[str | None]]  # (server, session, envelope) -> reply or None (store)


class HostileInbox(Inbox):
    """Inbox whose RCPT and DATA handling follow the behaviour of the moment."""

    def __init__(self) -> None:
        super().__init__()
        self.at_rcpt: Act | None = None
        self.at_data: Act | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.at_rcpt is not None:
            reply = await self.at_rcpt(server, session, envelope)
            if reply is not None:
                return reply
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.at_data is not None:
            reply = await self.at_data(server, session, envelope)
            if reply is not None:
                return reply
        return await super().handle_DATA(server, session, envelope)


def reply(text: str) -> Act:
    async def act(server: Any, session: Any, envelope: Any) -> str:
        return text

    return act


def close(*, store: bool) -> Act:
    async def act(server: Any, session: Any, envelope: Any) -> str:
        if store:
            await Inbox.handle_DATA(server.event_handler, server, session, envelope)
        server.transport.abort()
        return "421 closing"

    return act


def slow(seconds: float, *, drip: bool) -> Act:
    async def act(server: Any, session: Any, envelope: Any) -> str | None:
        await Inbox.handle_DATA(server.event_handler, server, session, envelope)  # accepted, then slow to say so
        if drip:
            for byte in b"250 2.0.0 Message accepted for delivery, thank you for your patience":
                server.transport.write(bytes([byte]))
                await asyncio.sleep(seconds)
        else:
            await asyncio.sleep(seconds)
        return "250 OK"

    return act


OK, RETRY, DEAD, PAUSE = "ok", "retry", "dead", "pause"
BEHAVIOURS: dict[str, tuple[str, Act, str]] = {
    "close at RCPT": ("rcpt", close(store=False), RETRY),
    "close in DATA, nothing kept": ("data", close(store=False), RETRY),
    "close after accepting": ("data", close(store=True), RETRY),
    "450 at RCPT": ("rcpt", reply("450 4.2.1 mailbox busy"), RETRY),
    "550 at RCPT": ("rcpt", reply("550 5.1.1 no such user"), DEAD),
    "451 at DATA": ("data", reply("451 4.3.0 try again later"), RETRY),
    "452 at DATA": ("data", reply("452 4.3.1 insufficient storage"), RETRY),
    "552 at DATA": ("data", reply("552 5.3.4 message too big"), DEAD),
    "554 at DATA": ("data", reply("554 5.7.1 rejected as spam"), DEAD),
    "530 at RCPT": ("rcpt", reply("530 5.7.0 authentication required"), PAUSE),
    "slow reply": ("data", slow(4.0, drip=False), RETRY),
    "reply a byte at a time": ("data", slow(0.3, drip=True), RETRY),
}


def mails(store: Store) -> list[Email]:
    out = []
    for i in range(MAILS):
        email = Email(to=f"visitor{i}@example.com", subject="Your call", body=f"Hello Visitor Number{i}")
        store.enqueue("email_visitor", f"lead-{i}", email.to_payload())
        out.append(email)
    return out


def leaks(caplog: pytest.LogCaptureFixture, sent: list[Email]) -> list[str]:
    """What the kiosk logged (not the test server) that it must not."""
    mine = [r for r in caplog.records if r.name.startswith("kiosk")]
    text = "\n".join(r.getMessage() + str(getattr(r, "kiosk", "")) for r in mine)
    words = [SMTP_PASSWORD, *[m.to for m in sent], *[f"Number{i}" for i in range(MAILS)]]
    return [w for w in words if w in text]


@pytest.mark.parametrize("name", list(BEHAVIOURS))
def test_a_hostile_smtp_server_loses_no_mail(
    name: str, tmp_path: Path, cert: tuple[Path, Path], port: int, caplog: pytest.LogCaptureFixture
) -> None:
    where, act, expected = BEHAVIOURS[name]
    smtp = Smtp(cert, port)
    inbox = HostileInbox()
    smtp.controller.handler = inbox
    store = Store(tmp_path / "k.db")
    sent = mails(store)
    notify = notify_settings(port, cert[0], smtp_timeout_s=DEADLINE_S)
    with smtp, caplog.at_level(logging.DEBUG):
        setattr(inbox, f"at_{where}", act)
        with timed() as elapsed:
            report = mailer_syncer(store, notify, ManualClock()).drain()
            took = elapsed()
        outcome = OK if report.sent == MAILS else DEAD if report.dead else PAUSE if report.paused else RETRY
        assert outcome == expected, f"{name}: {outcome} {report}"
        assert took < BOUND_S, f"{name}: the pass took {took:.1f} s"
        inbox.at_rcpt = inbox.at_data = None  # the server behaves again
        ob.requeue(store, all_dead=True)
        mailer_syncer(store, notify, ManualClock()).drain(force=True)
        ids = [msg["Message-ID"] for _, _, msg in inbox.messages]
    assert {m.to for m in sent} <= {rcpt for _, rcpts, _ in inbox.messages for rcpt in rcpts}, "an e-mail was lost"
    assert len(set(ids)) == MAILS, "distinct messages: each e-mail once, a resent one under the same Message-ID"
    assert store.count("outbox", "state = 'sent'") == MAILS
    assert not leaks(caplog, sent), leaks(caplog, sent)


def test_a_refused_credential_pauses_e_mail_keeps_it_and_a_new_password_resumes(
    tmp_path: Path, cert: tuple[Path, Path], port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The server refuses our credentials (535): e-mail pauses, nothing is dead-lettered, one
    ERROR, status says so (also in a new process); a forced pass that gets through resumes.
    (A changed configuration resuming is the CRM test's; the channels share the code.)"""
    from pydantic import SecretStr

    from kiosk.config import RetentionSettings, Secrets, SyncSettings
    from kiosk.leads.sync import Syncer

    store = Store(tmp_path / "k.db")
    mails(store)
    notify = notify_settings(port, cert[0], smtp_timeout_s=DEADLINE_S)

    def syncer(password: str) -> Syncer:
        return Syncer(store, "k1", SyncSettings(), notify, RetentionSettings(),
                      Secrets(smtp_password=SecretStr(password)), clock=ManualClock(), rand=lambda: 1.0)  # fmt: skip

    smtp = Smtp(cert, port)
    inbox = HostileInbox()
    smtp.controller.handler = inbox
    with smtp, caplog.at_level(logging.INFO):
        inbox.at_rcpt = reply("535 5.7.8 authentication credentials invalid")
        report = syncer(SMTP_PASSWORD).drain()
        assert report.paused and not report.dead and inbox.messages == []
        assert store.count("outbox", "state = 'pending'") == MAILS  # not dead-lettered, one by one
        again = syncer(SMTP_PASSWORD)
        assert "e-mail PAUSED" in again.status().line()
        inbox.at_rcpt = None
        assert again.drain(force=True).sent == MAILS  # the technician's forced pass gets through
        assert "PAUSED" not in again.status().line()
    paused = [r for r in caplog.records if "delivery paused" in r.getMessage()]
    assert len(paused) == 1 and paused[0].levelno == logging.ERROR
