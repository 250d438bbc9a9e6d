"""Retention: personal data of synced leads goes after ``personal_data_days``; consent evidence
stays for ``consent_days`` (TCPA: at least 4 years), then the whole lead goes.

* Purge: name, e-mail and phone are cleared (``purged_at`` set) once the lead reached the
  CRM that many days ago, and so are the rendered e-mails (they quote the same data). The
  phone number is first copied into the consent row: the evidence must still show which
  number agreed. Deal analysis, score and product stay (no longer tied to a person).
* Delete: after ``consent_days`` from the consent, the lead and everything about it. Leads
  still waiting to sync keep their personal data until then (they are the lender's open
  work); dead-lettered ones (the CRM refused them for good) are purged on the lead schedule,
  counted from their capture.
* Visit records and state time hold no personal data, but a visit record names the visit a
  lead came from: they go after ``consent_days`` too, with the daily stats documents sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from kiosk.config import RetentionSettings
from kiosk.leads.outbox import iso
from kiosk.leads.store import Store
from kiosk.logs import event

log = logging.getLogger(__name__)

_SYNCED_BEFORE = """
    SELECT l.id FROM leads l JOIN outbox o ON o.kind = 'lead' AND o.ref = l.id
    WHERE l.purged_at IS NULL
      AND ((o.state = 'sent' AND o.sent_at <= ?) OR (o.state = 'dead' AND o.created_at <= ?))
"""


@dataclass(frozen=True)
class PurgeResult:
    """How many leads lost their personal data, and how many were deleted outright."""

    purged: int
    deleted: int
    visits: int = 0  # visit records deleted


def purge(store: Store, retention: RetentionSettings, now: datetime) -> PurgeResult:
    """Apply both schedules at ``now`` in one transaction."""
    personal_cutoff = iso(now - timedelta(days=retention.personal_data_days))
    consent_cutoff = iso(now - timedelta(days=retention.consent_days))
    with store.transaction() as conn:
        # Dead-lettered leads follow the lead schedule too (from their capture), not the consent one.
        ids = [r[0] for r in conn.execute(_SYNCED_BEFORE, [personal_cutoff, personal_cutoff]).fetchall()]
        for lead_id in ids:
            conn.execute(
                "UPDATE consent SET phone = (SELECT phone FROM leads WHERE id = ?) WHERE lead_id = ? AND phone IS NULL",
                [lead_id, lead_id],
            )
            conn.execute(
                "UPDATE leads SET name = NULL, email = NULL, phone = NULL, purged_at = ? WHERE id = ?",
                [iso(now), lead_id],
            )
            conn.execute("UPDATE outbox SET payload_json = NULL WHERE ref = ? AND state IN ('sent', 'dead')", [lead_id])
        old = [r[0] for r in conn.execute("SELECT lead_id FROM consent WHERE given_at <= ?", [consent_cutoff])]
        visits = conn.execute("DELETE FROM visits WHERE started_at <= ?", [consent_cutoff]).rowcount
        conn.execute("DELETE FROM state_time WHERE day < ?", [consent_cutoff[:10]])
        conn.execute(
            "DELETE FROM outbox WHERE kind = 'daily_stats' AND state = 'sent' AND created_at <= ?", [consent_cutoff]
        )
        for lead_id in old:
            for sql in (
                "DELETE FROM outbox WHERE ref = ?",
                "DELETE FROM scores WHERE lead_id = ?",
                "DELETE FROM consent WHERE lead_id = ?",
                "DELETE FROM leads WHERE id = ?",
            ):
                conn.execute(sql, [lead_id])
    result = PurgeResult(purged=len(ids), deleted=len(old), visits=visits)
    if ids or old or visits:
        log.info(
            "retention: personal data purged from %d lead(s), %d lead(s) and %d visit record(s) past consent "
            "retention deleted", result.purged, result.deleted, result.visits,
            extra=event("retention_purge", purged=result.purged, deleted=result.deleted, visits=result.visits),
        )  # fmt: skip
    return result
