"""The CRM's side of the contract: the lead document and batch, the signed request, and
what each reply means (done, try again later, or never).

Wire format (``kiosk/schemas/lead-batch.schema.json``)::

    POST <endpoint>
    Authorization: Bearer <sync_token>
    Content-Type: application/json
    Idempotency-Key: <lead id>[,<lead id>...]   (the batch's lead ids, in body order)
    X-Kiosk-Timestamp: <unix seconds>
    X-Kiosk-Signature: v1=<hex HMAC-SHA256(sync_signing_secret, "<timestamp>." + body)>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from kiosk import __version__
from kiosk.leads import outbox as ob
from kiosk.leads.http import HttpReply
from kiosk.leads.store import Store
from kiosk.logs import redact

RETRYABLE_STATUS = frozenset({408, 425, 429})
# Not the lead's fault: our credentials (or a proxy's) were refused. The channel pauses.
CREDENTIALS_STATUS = frozenset({401, 403, 407})
RETRY_AFTER_MAX_S = 86400.0  # the syncer caps it further (sync.max_retry_after_s)
_DELTA_SECONDS = re.compile(r"[0-9]+")
SIGNATURE_HEADER = "X-Kiosk-Signature"
TIMESTAMP_HEADER = "X-Kiosk-Timestamp"


class Outcome:
    """What a delivery attempt came to: PAUSE is a fault of the channel (credentials refused,
    the endpoint moved), not of the leads; they wait until the configuration changes."""

    OK, RETRY, DEAD, PAUSE = "ok", "retry", "dead", "pause"


def is_retryable_status(status: int) -> bool:
    """408, 425, 429 and 5xx may pass later; any other 4xx will not."""
    return status in RETRYABLE_STATUS or status >= 500


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), at most
    :data:`RETRY_AFTER_MAX_S`; None when absent or unreadable. Never raises: the header is
    the server's to write, and junk in it (``²``, ``-5``, a year 99999) must not end a pass."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):  # ASCII digits only: str.isdigit() takes '²' too
        return min(float(value[:12]), RETRY_AFTER_MAX_S)
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError, ArithmeticError):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_MAX_S)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value: ``v1=`` + hex HMAC-SHA256 over ``timestamp.body``."""
    return "v1=" + hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def failure_reason(text: str) -> str:
    """A failure reason fit for the database, logs and STATUS=: short, no personal data."""
    return redact(" ".join(text.split()))[:200]


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
        "consent": consent_document(consent),
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


def consent_document(consent: dict[str, Any]) -> dict[str, Any]:
    """A consent row as the schema's ``consent``: what was said, the check, and revocation.

    ``automated_contact_allowed`` is the one field a dialer must obey: true only when the
    spoken disclosure held every required element and the consent was not withdrawn.
    """
    keys = ("disclosure_text", "disclosure_version", "channel", "given_at", "kiosk_id", "session_id", "visitor_words")
    status = consent.get("status") or "unchecked"
    return {k: consent[k] for k in keys} | {
        "phone": consent.get("phone"),
        "assistant_words": consent.get("assistant_words"),
        "greeting_words": consent.get("greeting_words"),
        "visitor_items": json.loads(consent.get("visitor_items_json") or "[]"),
        "status": status,
        "missing_elements": json.loads(consent.get("missing_json") or "[]"),
        "revoked_at": consent.get("revoked_at"),
        "automated_contact_allowed": status == "verified",
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


def classify_reply(reply: HttpReply, now: datetime) -> tuple[str, str, float | None]:
    """(outcome, reason, retry-after seconds) for an HTTP response."""
    if 200 <= reply.status < 300:
        return Outcome.OK, "", None
    if reply.status in CREDENTIALS_STATUS:
        why = f"HTTP {reply.status}: the CRM refused our credentials (sync_token, sync_signing_secret)"
        return Outcome.PAUSE, why, None
    if 300 <= reply.status < 400:
        # Never followed: the leads would go to a host nobody configured.
        where = urlsplit(reply.headers.get("location", "")).hostname or "nowhere"
        return Outcome.PAUSE, failure_reason(f"HTTP {reply.status}: the endpoint redirects to {where}; "
                                             "set sync.endpoint to the right URL"), None  # fmt: skip
    reason = failure_reason(f"HTTP {reply.status}: {reply.body[:200].decode('utf-8', 'replace')}")
    if is_retryable_status(reply.status):
        return Outcome.RETRY, reason, parse_retry_after(reply.headers.get("retry-after"), now)
    return Outcome.DEAD, reason, None
