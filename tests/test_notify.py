"""E-mail through the outbox against a real SMTP server (aiosmtpd) with STARTTLS on loopback."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from kiosk.config import BranchSettings, NotifySettings, RetentionSettings, Secrets, SyncSettings
from kiosk.leads.mail import queue_officer_email, queue_visitor_email, render
from kiosk.leads.store import Store
from kiosk.leads.sync import Syncer
from tests.synckit import ManualClock, free_port, make_cert, save_leads, server_tls
from tests.toolkit import CONFIG

TEMPLATES = CONFIG / "templates"
BRANCH = BranchSettings()


@dataclass
class Inbox:
    """aiosmtpd handler: keeps what arrives, refuses chosen recipients with 550."""

    refuse: set[str] = field(default_factory=set)
    messages: list[tuple[bool, list[str], email.message.EmailMessage]] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((session.ssl is not None, list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 Message accepted"


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"kiosk", b"smtp-pw")
    return AuthResult(success=ok)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"))


class Smtp:
    def __init__(self, cert: tuple[Path, Path], port: int, *, starttls: bool = True) -> None:
        self.inbox = Inbox()
        kw: dict[str, Any] = {"tls_context": server_tls(*cert), "require_starttls": True} if starttls else {}
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port, authenticator=_auth,
                                     auth_require_tls=starttls, ready_timeout=10, **kw)  # fmt: skip

    def __enter__(self) -> Inbox:
        self.controller.start()
        return self.inbox

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture
def port() -> Iterator[int]:
    yield free_port()


def notify_settings(port: int, ca: Path, **kw: Any) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=port, smtp_username="kiosk", smtp_ca_bundle=ca,
                          smtp_timeout_s=5.0, from_address="kiosk@lender.example", officer_email="lo@lender.example",
                          templates_dir=TEMPLATES, **kw)  # fmt: skip


def mailer_syncer(store: Store, notify: NotifySettings, clock: ManualClock) -> Syncer:
    return Syncer(store, "k1", SyncSettings(), notify, RetentionSettings(),
                  Secrets(smtp_password=SecretStr("smtp-pw")), clock=clock, rand=lambda: 1.0)  # fmt: skip


def score(store: Store, lead_id: str, disposition: str, total: int) -> None:
    store.conn.execute(
        "INSERT INTO scores (lead_id, created_at, total, disposition, points_json, reasons_json, rubric_version) "
        "VALUES (?, '2025-01-01T00:00:00+00:00', ?, ?, '{}', '[\"DSCR_1_25_PLUS\", \"LTV_OK\"]', 'r1')",
        [lead_id, total, disposition],
    )


def test_officer_email_only_for_qualified_leads(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    store = Store(tmp_path / "k.db")
    good, weak = save_leads(store, 2)
    score(store, good, "qualified", 84)
    score(store, weak, "nurture", 55)
    notify = notify_settings(25, cert[0])
    assert queue_officer_email(store, good, notify, BRANCH)
    assert queue_officer_email(store, good, notify, BRANCH)  # twice: still one row
    assert not queue_officer_email(store, weak, notify, BRANCH)
    assert not queue_officer_email(store, good, notify.model_copy(update={"officer_email": ""}), BRANCH)
    assert store.count("outbox", "kind = 'email_officer'") == 1
    with pytest.raises(ValueError, match="no lead"):
        queue_officer_email(store, "nope", notify, BRANCH)


def test_emails_are_delivered_over_starttls_with_login(tmp_path: Path, cert: tuple[Path, Path], port: int) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    score(store, lead_id, "qualified", 84)
    notify = notify_settings(port, cert[0])
    assert queue_officer_email(store, lead_id, notify, BRANCH)
    assert queue_visitor_email(store, lead_id, notify, BRANCH, "https://lender.example/book/abc")
    with Smtp(cert, port) as inbox:
        report = mailer_syncer(store, notify, ManualClock()).drain()
    assert (report.sent, report.retried, report.dead) == (2, 0, 0)
    by_to = {rcpt[0]: (tls, msg) for tls, rcpt, msg in inbox.messages}
    tls, officer = by_to["lo@lender.example"]
    assert tls and officer["Subject"] == "Qualified lead from Main branch: dscr, score 84"
    body = officer.get_content()
    assert "+14155550000" in body and "DSCR_1_25_PLUS" in body and lead_id in body
    tls, visitor = by_to["visitor0@example.com"]
    text = visitor.get_content()
    assert tls and "https://lender.example/book/abc" in text and "unsubscribe" in text
    assert BRANCH.lender_name in text and "1 Main St" in text  # CAN-SPAM: sender and postal address
    assert store.count("outbox", "state = 'sent'") == 3 - 1  # the lead row itself waits for the CRM


def test_smtp_outage_is_retried_and_delivered_once(tmp_path: Path, cert: tuple[Path, Path], port: int) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    notify = notify_settings(port, cert[0])
    queue_visitor_email(store, lead_id, notify, BRANCH)
    clock = ManualClock()
    syncer = mailer_syncer(store, notify, clock)
    down = syncer.drain()
    assert down.retried == 1 and "smtp" in (syncer.status().last_error or "")
    with Smtp(cert, port) as inbox:
        assert syncer.drain().sent == 0  # paused by the backoff
        clock.advance(10)
        assert syncer.drain().sent == 1
        assert syncer.drain().sent == 0
    assert len(inbox.messages) == 1


def test_refused_recipient_is_dead_lettered(tmp_path: Path, cert: tuple[Path, Path], port: int) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    notify = notify_settings(port, cert[0])
    queue_visitor_email(store, lead_id, notify, BRANCH)
    store.enqueue("email_officer", "manual-1", {"to": "lo@lender.example", "subject": "s"})  # no body
    clock = ManualClock()
    with Smtp(cert, port) as inbox:
        inbox.refuse.add("visitor0@example.com")
        syncer = mailer_syncer(store, notify, clock)
        assert syncer.drain().dead == 2
        clock.advance(86400)
        assert syncer.drain().dead == 0
    assert inbox.messages == []
    errors = dict(store.conn.execute("SELECT kind, last_error FROM outbox WHERE state = 'dead'").fetchall())
    assert errors["email_visitor"].startswith("smtp: recipient refused (550)")
    assert "@" not in errors["email_visitor"]
    assert "lacks to, subject or body" in errors["email_officer"]


def test_never_sends_in_clear_when_starttls_is_missing(tmp_path: Path, cert: tuple[Path, Path], port: int) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    notify = notify_settings(port, cert[0])
    queue_visitor_email(store, lead_id, notify, BRANCH)
    with Smtp(cert, port, starttls=False) as inbox:
        report = mailer_syncer(store, notify, ManualClock()).drain()
    assert report.retried == 1 and "STARTTLS" in report.errors[0]
    assert inbox.messages == []


def test_template_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_text("no subject line\n\nbody")
    with pytest.raises(ValueError, match=r"must start with 'Subject: \.\.\.'"):
        render(tmp_path, "bad.txt", {})
    (tmp_path / "unknown.txt").write_text("Subject: hi $who\n\nbody")
    with pytest.raises(ValueError, match="unknown or bad placeholder"):
        render(tmp_path, "unknown.txt", {})
