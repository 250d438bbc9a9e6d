"""Consent evidence of what was said, its check, and withdrawing consent (issue 17, points 3-5).

Evidence comes from the assistant's own transcript (the real TranscriptBook, by item id),
not from the script it was given; late visitor transcripts complete it; a spoken disclosure
missing a required element is saved as "unverified" and the CRM is told no automated
contact is allowed. withdrawConsent revokes, cancels queued e-mails and reaches the
reference receiver through the outbox.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from kiosk.leads.crm import lead_document
from kiosk.leads.store import Store
from kiosk.realtime.transcripts import PENDING_MARK, TranscriptBook
from kiosk.tools.consent import missing_elements, spoken_digits
from tests.synckit import ManualClock, make_syncer, serve_receiver, sync_settings
from tests.toolkit import CONSENT_SAID, DRAFT, GREETING_SAID, call, make_ctx, make_registry

REG = make_registry()
SCHEMAS = files("kiosk") / "schemas"
LEAD_SCHEMA = json.loads((SCHEMAS / "lead-batch.schema.json").read_text())
REVOCATION_SCHEMA = json.loads((SCHEMAS / "consent-revocation.schema.json").read_text())
# What the demo's assistant once said: no opt-out, no "AI", no number in the consent turn.
SHORT = ("Example Lending may call or text you at that number, including by automated voice. Consent is not a "
         "condition of any loan. Do you agree?")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "k.db")
    yield s  # type: ignore[misc]
    s.close()


def _book(consent_said: str, *, answer: str | None = "Yes, I agree.") -> TranscriptBook:
    book = TranscriptBook()
    book.assistant("a0", GREETING_SAID, 0)
    book.expect_visitor("v1")
    book.visitor("v1", "I'm Jane Doe, four one five, five five five, zero one three two.")
    book.assistant("a1", consent_said, 0)
    book.expect_visitor("v2")
    if answer is not None:
        book.visitor("v2", answer)
    return book


def test_evidence_is_what_the_assistant_said_with_the_visitors_words_by_item(store: Store) -> None:
    ctx = make_ctx(store)
    book = _book(CONSENT_SAID)
    ctx.transcript, ctx.items = book.lines(), book.items()
    out = call(REG, "saveLead", {"leadDraft": DRAFT}, ctx)
    assert out["consentVerified"] is True
    row = store.consent(out["leadId"])
    assert row is not None
    assert row["assistant_words"] == CONSENT_SAID and row["greeting_words"] == GREETING_SAID
    assert row["phone"] == "+14155550132" and "+14155550132" in row["disclosure_text"]
    # Only the answer: the line with the name and e-mail before the consent turn is not evidence (retention).
    assert [i["item"] for i in json.loads(row["visitor_items_json"])] == ["v2"]
    assert "Jane" not in row["visitor_words"]
    assert row["status"] == "verified" and json.loads(row["missing_json"]) == []
    doc = lead_document(store, out["leadId"])
    assert doc is not None and doc["consent"]["automated_contact_allowed"] is True
    jsonschema.validate(doc, {"$schema": LEAD_SCHEMA["$schema"], "$defs": LEAD_SCHEMA["$defs"],
                              "$ref": "#/$defs/lead"})


def test_a_spoken_disclosure_missing_elements_is_saved_unverified(store: Store) -> None:
    ctx = make_ctx(store)
    book = _book(SHORT)
    ctx.transcript, ctx.items = book.lines(), book.items()
    out = call(REG, "saveLead", {"leadDraft": DRAFT}, ctx)
    assert out["leadId"] and out["consentVerified"] is False
    row = store.consent(out["leadId"])
    assert row is not None and row["status"] == "unverified"
    missing = json.loads(row["missing_json"])
    assert any("phone number" in m for m in missing) and "how to opt out" in missing
    doc = lead_document(store, out["leadId"])
    assert doc is not None and doc["consent"]["automated_contact_allowed"] is False
    assert doc["consent"]["missing_elements"] == missing


@pytest.mark.parametrize(
    ("said", "missing"),
    [
        (CONSENT_SAID, []),
        (CONSENT_SAID.replace("Example Lending LLC", "We"), ["the lender's name (Example Lending LLC)"]),
        (CONSENT_SAID.replace("including by automated or AI voice, ", ""), ["automated or AI voice"]),
        (CONSENT_SAID.replace("Consent is not a condition of any loan, and y", "Y"),
         ["consent is not a condition of any loan"]),
        (CONSENT_SAID.replace(", and you can opt out any time by saying or replying stop", ""), ["how to opt out"]),
        (CONSENT_SAID.replace("zero one three two", "zero one three"), ["the phone number covered (+14155550132)"]),
        (CONSENT_SAID.replace("four one five, five five five, zero one three two", "(415) 555-0132"), []),
    ],
)
def test_the_check_names_each_missing_element(said: str, missing: list[str]) -> None:
    assert missing_elements(said, "Example Lending LLC", "+14155550132") == missing


def test_spoken_digits() -> None:
    assert spoken_digits("four one five, 555, oh one three two") == "4155550132"


def test_late_visitor_words_complete_the_evidence(store: Store) -> None:
    ctx = make_ctx(store)
    book = _book(CONSENT_SAID, answer=None)  # the "yes" is committed, its transcript not in yet
    ctx.transcript, ctx.items = book.lines(), book.items()
    lead_id = call(REG, "saveLead", {"leadDraft": DRAFT}, ctx)["leadId"]
    row = store.consent(lead_id)
    assert row is not None and PENDING_MARK in row["visitor_words"]
    book.visitor("v2", "Yes, I agree.")
    ctx.items = book.items()
    assert ctx.settle_late_words(PENDING_MARK) == 1
    row = store.consent(lead_id)
    assert row is not None and row["visitor_words"].endswith("Yes, I agree.")
    assert json.loads(row["visitor_items_json"])[-1] == {"item": "v2", "words": "Yes, I agree."}
    assert not ctx.awaiting


def test_withdraw_revokes_cancels_emails_and_reaches_the_receiver(store: Store, tmp_path: Path,
                                                                  cert: tuple[Path, Path]) -> None:
    ctx = make_ctx(store)
    lead_id = call(REG, "saveLead", {"leadDraft": DRAFT}, ctx)["leadId"]
    assert call(REG, "scheduleCall", {"leadId": lead_id}, ctx)["emailQueued"] is True
    ctx.transcript.append(("visitor", "Actually, please stop contacting me."))
    out = call(REG, "withdrawConsent", {}, ctx)
    assert out["withdrawn"] is True and out["emailsCancelled"] == 1
    row = store.consent(lead_id)
    assert row is not None and row["status"] == "revoked" and row["revoked_at"]
    assert row["revoked_words"] == "Actually, please stop contacting me."
    assert store.count("outbox", "kind = 'email_visitor' AND ref = ?", (lead_id,)) == 0
    with serve_receiver(tmp_path / "r.db", cert) as rx:
        report = make_syncer(store, sync_settings(rx.url, cert[0]), ManualClock()).drain()
        assert report.sent >= 2, report
        revocations = rx.receiver.documents("revocations")
        leads = rx.receiver.stored()
    notice = revocations[lead_id]
    jsonschema.validate(notice, REVOCATION_SCHEMA)
    assert notice["lead_id"] == lead_id and notice["visitor_words"] == "Actually, please stop contacting me."
    assert leads[lead_id]["consent"]["status"] == "revoked"
    assert leads[lead_id]["consent"]["automated_contact_allowed"] is False


def test_withdraw_is_scoped_to_the_visit(store: Store) -> None:
    first = make_ctx(store, "visit-1")
    lead_id = call(REG, "saveLead", {"leadDraft": DRAFT}, first)["leadId"]
    second = make_ctx(store, "visit-2")
    assert call(REG, "withdrawConsent", {"leadId": lead_id}, second)["error"] == "unknown lead"
    nothing = call(REG, "withdrawConsent", {}, second)
    assert nothing["withdrawn"] is False and "phone number" in nothing["say"]
    row = store.consent(lead_id)
    assert row is not None and row["status"] == "verified"
    # Nothing saved in this visit: the visitor can still stop a number; the CRM is told, nothing local is read.
    by_phone = call(REG, "withdrawConsent", {"phone": "(415) 555-0132"}, second)
    assert by_phone["withdrawn"] is True and by_phone["leads"] == 0
    payload = json.loads(store.conn.execute(
        "SELECT payload_json FROM outbox WHERE kind = 'consent_revocation'").fetchone()[0])
    jsonschema.validate(payload, REVOCATION_SCHEMA)
    assert payload["phone"] == "+14155550132" and payload["lead_id"] is None


def test_delete_my_details_erases_an_unsent_lead_but_keeps_the_proof(store: Store) -> None:
    ctx = make_ctx(store)
    lead_id = call(REG, "saveLead", {"leadDraft": DRAFT}, ctx)["leadId"]
    ctx.transcript.append(("visitor", "Delete my details."))
    assert call(REG, "withdrawConsent", {"deleteDetails": True}, ctx)["withdrawn"] is True
    lead = store.lead(lead_id)
    assert lead is not None and lead["name"] is None and lead["email"] is None and lead["purged_at"]
    assert store.count("outbox", "kind = 'lead' AND ref = ?", (lead_id,)) == 0  # never uploaded
    row = store.consent(lead_id)
    assert row is not None and row["phone"] == "+14155550132" and row["revoked_words"] == "Delete my details."
    payload = json.loads(store.conn.execute(
        "SELECT payload_json FROM outbox WHERE kind = 'consent_revocation' AND ref = ?", (lead_id,)).fetchone()[0])
    assert payload["erase_personal_data"] is True
