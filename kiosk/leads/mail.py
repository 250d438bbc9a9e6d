"""E-mail notifications: queued in the outbox (they survive outages), sent over SMTP with STARTTLS.

Tools call :func:`queue_officer_email` after scoring a lead and :func:`queue_visitor_email`
when the visitor asked for the scheduling link, then ``Syncer.kick()``. Both render a
template from ``notify.templates_dir`` (``config/templates/``) into the outbox row's
``payload_json`` as ``{"to", "subject", "body"}``, at most once per lead and kind (the
outbox's UNIQUE(kind, ref)). Anything else may queue ``email_visitor`` / ``email_officer``
rows with that payload shape; the syncer sends them all alike.

Delivery is at least once: a crash after the server accepted a message and before the row
is marked sent sends it again, with the same ``Message-ID`` so mail clients can fold it.
"""

from __future__ import annotations

import hashlib
import smtplib
import string
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr

from kiosk.config import BranchSettings, NotifySettings
from kiosk.errors import KioskError
from kiosk.leads.http import tls_context
from kiosk.leads.store import Store

OFFICER_TEMPLATE = "officer_email.txt"
VISITOR_TEMPLATE = "visitor_email.txt"


class MailRefused(KioskError, ValueError):
    """The SMTP server refused this message for good (5xx for a recipient, sender or content)."""


class Mailer(Protocol):
    """Sends one e-mail; raises MailRefused (final) or OSError (try again later)."""

    def send(self, to: str, subject: str, body: str, *, message_key: str) -> None:
        """Send a plain-text message; ``message_key`` makes its Message-ID stable."""
        ...


def render(templates_dir: Path, name: str, values: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) from a template: a ``Subject:`` line, a blank line, the body; ``$name`` fields."""
    path = templates_dir / name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"e-mail template {path} cannot be read: {exc.strerror or exc}") from None
    head, sep, body = text.partition("\n\n")
    if not sep or not head.startswith("Subject:"):
        raise ValueError(f"e-mail template {path} must start with 'Subject: ...' and a blank line")
    fields = {k: "" if v is None else str(v) for k, v in values.items()}
    try:
        subject = string.Template(head.removeprefix("Subject:").strip()).substitute(fields)
        return subject, string.Template(body).substitute(fields)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"e-mail template {path} uses an unknown or bad placeholder: {exc}") from None


def _latest_score(store: Store, lead_id: str) -> dict[str, Any] | None:
    rows = list(
        store.db.query("SELECT * FROM scores WHERE lead_id = ? ORDER BY id DESC LIMIT 1", [lead_id])
    )
    return rows[0] if rows else None


def _reason_lines(reasons_json: str) -> str:
    import json

    reasons = json.loads(reasons_json)
    if not isinstance(reasons, list):
        reasons = [reasons]
    return "\n".join(f"  - {r if isinstance(r, str) else json.dumps(r, sort_keys=True)}" for r in reasons)


def queue_officer_email(store: Store, lead_id: str, notify: NotifySettings, branch: BranchSettings) -> bool:
    """Queue the loan-officer e-mail when the lead's latest score is ``qualified``.

    Returns True when a row was queued (or already was), False when no officer address is
    configured or the lead is not qualified. Raises ValueError for an unknown lead or a
    broken template. Call ``Syncer.kick()`` afterwards.
    """
    lead = store.lead(lead_id)
    if lead is None:
        raise ValueError(f"no lead {lead_id}")
    score = _latest_score(store, lead_id)
    if not notify.officer_email or score is None or score["disposition"] != "qualified":
        return False
    subject, body = render(
        notify.templates_dir,
        OFFICER_TEMPLATE,
        {
            "lead_id": lead_id,
            "name": lead["name"],
            "email": lead["email"],
            "phone": lead["phone"],
            "product_type": lead["product_type"],
            "created_at": lead["created_at"],
            "kiosk_id": lead["kiosk_id"],
            "score_total": score["total"],
            "disposition": score["disposition"],
            "rubric_version": score["rubric_version"],
            "reasons": _reason_lines(score["reasons_json"]),
            "branch_name": branch.branch_name,
            "lender_name": branch.lender_name,
        },
    )
    store.enqueue("email_officer", lead_id, {"to": notify.officer_email, "subject": subject, "body": body})
    return True


def queue_visitor_email(
    store: Store, lead_id: str, notify: NotifySettings, branch: BranchSettings, booking_url: str | None = None
) -> bool:
    """Queue the scheduling-link e-mail to a saved (so consenting) visitor; False without an address.

    The template carries the postal address and the unsubscribe line CAN-SPAM asks for.
    Raises ValueError for an unknown lead or a broken template. Call ``Syncer.kick()`` afterwards.
    """
    lead = store.lead(lead_id)
    if lead is None:
        raise ValueError(f"no lead {lead_id}")
    if not lead["email"] or store.consent(lead_id) is None:
        return False
    subject, body = render(
        notify.templates_dir,
        VISITOR_TEMPLATE,
        {
            "name": lead["name"],
            "booking_url": booking_url or branch.booking_url,
            "lender_name": branch.lender_name,
            "nmls_id": branch.nmls_id,
            "branch_name": branch.branch_name,
            "postal_address": notify.postal_address,
        },
    )
    store.enqueue("email_visitor", lead_id, {"to": lead["email"], "subject": subject, "body": body})
    return True


class SmtpMailer:
    """smtplib over STARTTLS with certificate checks; never sends in clear."""

    def __init__(self, notify: NotifySettings, password: SecretStr | None, kiosk_id: str) -> None:
        self.s = notify
        self._password = password.get_secret_value() if password else ""
        self.kiosk_id = kiosk_id
        self.context = tls_context(notify.smtp_ca_bundle)

    def message(self, to: str, subject: str, body: str, message_key: str) -> EmailMessage:
        """The message as sent."""
        msg = EmailMessage()
        msg["From"] = self.s.from_address
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(usegmt=True)
        digest = hashlib.sha256(message_key.encode()).hexdigest()[:32]
        msg["Message-ID"] = f"<{digest}@{self.kiosk_id}.kiosk.invalid>"
        msg.set_content(body)
        return msg

    def send(self, to: str, subject: str, body: str, *, message_key: str) -> None:
        """Connect, STARTTLS, log in when configured, send; MailRefused on a permanent refusal."""
        msg = self.message(to, subject, body, message_key)
        try:
            with smtplib.SMTP(self.s.smtp_host, self.s.smtp_port, timeout=self.s.smtp_timeout_s) as smtp:
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError("server does not offer STARTTLS; not sending in clear")
                smtp.starttls(context=self.context)
                smtp.ehlo()
                if self.s.smtp_username:
                    smtp.login(self.s.smtp_username, self._password)
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if any(code >= 500 for code in codes):
                raise MailRefused(f"recipient refused ({', '.join(map(str, codes))})") from None
            raise
        except smtplib.SMTPAuthenticationError:
            raise  # our credentials, not this message: retry, and ops see the error
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                err = exc.smtp_error
                text = err.decode("utf-8", "replace") if isinstance(err, bytes) else err
                raise MailRefused(f"{exc.smtp_code} {text}") from None
            raise
