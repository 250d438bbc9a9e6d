"""E-mail through the outbox against a real SMTP server (aiosmtpd) with STARTTLS on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.config import BranchSettings, NotifySettings
from kiosk.leads.mail import (
    OFFICER_KIND,
    OFFICER_TEMPLATE,
    VISITOR_KIND,
    VISITOR_TEMPLATE,
    Composer,
    Email,
    MailTemplateError,
    render,
)
from kiosk.leads.records import ScoreRecord
from kiosk.leads.store import Store
from tests.mailkit import OFFICER, Smtp, mailer_syncer, notify_settings
from tests.synckit import CONSENT, ManualClock, lead, save_leads
from tests.toolkit import UNSUBSCRIBE

BRANCH = BranchSettings()
QUALIFIED = ScoreRecord(total=84, disposition="qualified", points={}, reasons=["DSCR_1_25_PLUS", "LTV_OK"],
                        rubric_version="r1")  # fmt: skip


def queue_visitor(store: Store, lead_id: str, notify: NotifySettings, link: str = "https://lender.example/b") -> None:
    email = Composer(notify, BRANCH).visitor(to="visitor0@example.com", name="Visitor", product_name="DSCR loan",
                                             booking_url=link, lead_id=lead_id, kiosk_id="k1")  # fmt: skip
    store.enqueue(VISITOR_KIND, lead_id, email.to_payload())


def test_officer_email_only_for_qualified_leads_with_an_officer(cert: tuple[Path, Path]) -> None:
    composer = Composer(notify_settings(25, cert[0]), BRANCH)
    record = lead(0)
    email = composer.officer(record, QUALIFIED)
    assert email is not None and email.to == OFFICER
    assert email.subject == "Qualified lead from Main branch: dscr, score 84"
    assert record.id in email.body and "+14155550000" in email.body and "  - DSCR_1_25_PLUS" in email.body
    nurture = ScoreRecord(total=55, disposition="nurture", points={}, reasons=[], rubric_version="r1")
    assert composer.officer(record, nurture) is None
    nobody = Composer(notify_settings(25, cert[0], officer_email=""), BRANCH)
    assert nobody.officer(record, QUALIFIED) is None


def test_emails_are_delivered_over_starttls_with_login(tmp_path: Path, cert: tuple[Path, Path], port: int) -> None:
    store = Store(tmp_path / "k.db")
    notify = notify_settings(port, cert[0])
    record = lead(0)
    officer = Composer(notify, BRANCH).officer(record, QUALIFIED)
    assert officer is not None
    store.save_lead(record, CONSENT, QUALIFIED, outbox=[(OFFICER_KIND, officer.to_payload())])
    queue_visitor(store, record.id, notify, "https://lender.example/book/abc")
    with Smtp(cert, port) as inbox:
        report = mailer_syncer(store, notify, ManualClock()).drain()
    assert (report.sent, report.retried, report.dead) == (2, 0, 0)
    by_to = {rcpt[0]: (tls, msg) for tls, rcpt, msg in inbox.messages}
    tls, sent = by_to[OFFICER]
    assert tls and sent["Subject"] == "Qualified lead from Main branch: dscr, score 84"
    body = sent.get_content()
    assert "+14155550000" in body and "DSCR_1_25_PLUS" in body and record.id in body
    tls, visitor = by_to["visitor0@example.com"]
    text = visitor.get_content()
    assert tls and "https://lender.example/book/abc" in text and UNSUBSCRIBE in text
    assert BRANCH.lender_name in text and "1 Main St" in text  # CAN-SPAM: sender and postal address
    assert store.count("outbox", "state = 'sent'") == 3 - 1  # the lead row itself waits for the CRM


def test_smtp_outage_is_retried_and_delivered_once(tmp_path: Path, cert: tuple[Path, Path], port: int) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    notify = notify_settings(port, cert[0])
    queue_visitor(store, lead_id, notify)
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


def test_refused_recipient_and_bad_payloads_are_dead_lettered(
    tmp_path: Path, cert: tuple[Path, Path], port: int
) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    notify = notify_settings(port, cert[0])
    queue_visitor(store, lead_id, notify)
    store.enqueue(OFFICER_KIND, "manual-1", {"to": OFFICER, "subject": "s", "text": "b"})  # no body
    clock = ManualClock()
    with Smtp(cert, port) as inbox:
        inbox.refuse.add("visitor0@example.com")
        syncer = mailer_syncer(store, notify, clock)
        assert syncer.drain().dead == 2
        clock.advance(86400)
        assert syncer.drain().dead == 0
    assert inbox.messages == []
    errors = dict(store.conn.execute("SELECT kind, last_error FROM outbox WHERE state = 'dead'").fetchall())
    assert errors[VISITOR_KIND].startswith("smtp: recipient refused (550)")
    assert "@" not in errors[VISITOR_KIND]
    assert errors[OFFICER_KIND] == "e-mail payload lacks 'body'"


def test_never_sends_in_clear_when_starttls_is_missing(tmp_path: Path, cert: tuple[Path, Path], port: int) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    notify = notify_settings(port, cert[0])
    queue_visitor(store, lead_id, notify)
    with Smtp(cert, port, starttls=False) as inbox:
        report = mailer_syncer(store, notify, ManualClock()).drain()
    assert report.retried == 1 and "STARTTLS" in report.errors[0]
    assert inbox.messages == []


def test_the_payload_reads_back_what_was_written_and_names_what_is_wrong() -> None:
    email = Email("a@example.com", "Hi", "Body")
    assert Email.from_payload(email.to_payload()) == email
    assert Email.from_payload({**email.to_payload(), "lead_id": "x"}) == email  # extra keys are ignored
    for payload, message in [
        (None, "payload is missing"),
        ({"to": "a@example.com", "subject": "Hi", "text": "Body"}, "lacks 'body'"),
        ({"subject": "Hi", "body": "Body"}, "lacks 'to'"),
        ({"to": "a@example.com", "subject": 3, "body": "Body"}, "'subject' must be a non-empty string"),
        ({"to": " ", "subject": "Hi", "body": "Body"}, "'to' must be a non-empty string"),
    ]:
        with pytest.raises(ValueError, match=message):
            Email.from_payload(payload)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("no subject line\n\nbody $lead_id", r"must be a 'Subject: \.\.\.' line, a blank line, then the body"),
        ("Subject:\n\nbody $lead_id", "must be a 'Subject: ...' line"),  # an empty subject
        ("Subject: hi $who\n\nbody $lead_id", r"unknown placeholder\(s\) \$who; known: \$branch_name"),
        ("Subject: hi\n\nbody without the id", r"must use \$lead_id"),
        ("Subject: hi\n\ncosts $5 for $lead_id", "bad placeholder"),
        (None, "cannot be read"),
    ],
)
def test_template_errors_are_clear(tmp_path: Path, text: str | None, error: str) -> None:
    if text is not None:
        (tmp_path / OFFICER_TEMPLATE.name).write_text(text)
    with pytest.raises(MailTemplateError, match=error):
        render(tmp_path, OFFICER_TEMPLATE, {"lead_id": "x"})


def test_the_composer_fills_every_placeholder_a_template_may_use(tmp_path: Path) -> None:
    for spec in (OFFICER_TEMPLATE, VISITOR_TEMPLATE):
        names = sorted(spec.fields)
        (tmp_path / spec.name).write_text("Subject: all\n\n" + "|".join(f"{n}=${n}" for n in names))
    composer = Composer(NotifySettings(templates_dir=tmp_path, officer_email=OFFICER, unsubscribe_address=UNSUBSCRIBE),
                        BRANCH)  # fmt: skip
    officer = composer.officer(lead(0), QUALIFIED)
    visitor = composer.visitor(to="v@example.com", name=None, product_name="DSCR loan", booking_url="https://b",
                               lead_id="l1", kiosk_id="k1")  # fmt: skip
    assert officer is not None
    for email, spec in ((officer, OFFICER_TEMPLATE), (visitor, VISITOR_TEMPLATE)):
        values = dict(part.split("=", 1) for part in email.body.strip().split("|"))
        assert set(values) == spec.fields
        assert all(values.values()), f"{spec.name}: empty values {[k for k, v in values.items() if not v]}"
