"""Opting out: the revocation document the CRM gets, and the e-mail unsubscribe.

One path for every withdrawal: :meth:`Store.revoke_consent` marks the consent, cancels the
lead's queued e-mails and queues a ``kiosk.consent-revocation/1`` document
(``kiosk/schemas/consent-revocation.schema.json``) in the same transaction; the syncer
sends it to the CRM like the fleet's documents. withdrawConsent (the visitor at the kiosk)
revokes everything; :func:`unsubscribe` (``kiosk leads unsubscribe``, run by the lender's
staff who read ``notify.unsubscribe_address``) stops only the e-mails. The syncer asks
:func:`mail_stopped` before it sends a visitor e-mail, so nothing reaches an address whose
lead opted out, whatever was queued before.

A visitor who later asks the kiosk again for the link, in a new visit, makes a new lead with
a new consent: that request is the "affirmative consent" after an opt-out CAN-SPAM allows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from kiosk.leads.mail import VISITOR_KIND
from kiosk.leads.outbox import REVOCATION_KIND
from kiosk.leads.records import utc_now
from kiosk.leads.store import Store

REVOCATION_SCHEMA = "kiosk.consent-revocation/1"
EMAIL_CHANNEL, EMAIL_SCOPE = "email_unsubscribe", "e-mails"


def revocation_document(
    *,
    kiosk_id: str,
    session_id: str,
    lead_id: str | None,
    phone: str | None,
    words: str,
    erase: bool = False,
    channel: str = "kiosk_voice",
    scope: str = "all calls, texts and e-mails",
    doc_id: str | None = None,
) -> dict[str, Any]:
    """A ``kiosk.consent-revocation/1`` document; its id (the Idempotency-Key) is ``doc_id``,
    else the lead id, else a fresh one."""
    doc = doc_id or lead_id or str(uuid.uuid4())
    return {
        "schema": REVOCATION_SCHEMA,
        "id": doc,
        "kiosk_id": kiosk_id,
        "session_id": session_id,
        "lead_id": lead_id,
        "phone": phone,
        "revoked_at": utc_now(),
        "channel": channel,
        "visitor_words": words,
        "scope": scope,
        "erase_personal_data": erase,
    }


def mail_allowed(consent: dict[str, Any] | None) -> bool:
    """Whether a lead's consent row lets the kiosk e-mail the visitor: on record, not revoked,
    not unsubscribed from e-mail."""
    return consent is not None and consent.get("status") != "revoked" and not consent.get("email_revoked_at")


def mail_stopped(store: Store, kind: str, ref: str) -> bool:
    """True when a queued e-mail of ``kind`` about lead ``ref`` must not go: the visitor's, and
    the lead withdrew consent or unsubscribed (the loan officer's e-mail goes to the lender).
    Whether to queue it at all was decided with the consent at hand (scheduleCall)."""
    if kind != VISITOR_KIND:
        return False
    consent = store.consent(ref)
    return consent is not None and not mail_allowed(consent)


@dataclass(frozen=True)
class Unsubscribed:
    """What :func:`unsubscribe` did: the leads it stopped e-mailing and the e-mails it cancelled."""

    lead_ids: list[str]
    cancelled: int


def unsubscribe(store: Store, target: str, note: str) -> Unsubscribed:
    """Stop e-mails to an address: ``target`` is the address or a lead id (the one the
    List-Unsubscribe mailto's subject names). Every lead that still holds that address is
    marked unsubscribed, its queued visitor e-mails are cancelled and a revocation (scope
    "e-mails") is queued for the CRM, once per lead however often this runs.
    """
    target = target.strip()
    if "@" in target:
        address: str | None = target
    else:
        lead = store.lead(target)
        address = lead["email"] if lead else None
        if lead is None:
            return Unsubscribed([], 0)
        if not address:  # purged or erased: the lead itself is all we know
            return _stop(store, [lead], note)
    leads = store.rows("SELECT * FROM leads WHERE lower(email) = lower(?) ORDER BY created_at", (address,))
    return _stop(store, leads, note)


def _stop(store: Store, leads: list[dict[str, Any]], note: str) -> Unsubscribed:
    cancelled = 0
    for lead in leads:
        doc = revocation_document(
            kiosk_id=lead["kiosk_id"], session_id=lead["session_id"], lead_id=lead["id"], phone=None, words=note,
            channel=EMAIL_CHANNEL, scope=EMAIL_SCOPE, doc_id=f"unsubscribe-{lead['id']}",
        )  # fmt: skip
        cancelled += store.revoke_consent(lead["id"], note, (VISITOR_KIND,), (REVOCATION_KIND, doc), email_only=True)
    return Unsubscribed([str(lead["id"]) for lead in leads], cancelled)
