"""E-mail: the payload and the templates (the SMTP sender is :mod:`kiosk.leads.smtp`).

* :class:`Email` is the only shape of an e-mail outbox row's ``payload_json``
  (``{"to", "subject", "body"}`` and, for a visitor, ``"headers"``): the writers queue
  ``Email.to_payload()`` and the syncer reads ``Email.from_payload()``, so the two sides
  cannot drift apart.
* :class:`Composer` writes the kiosk's two e-mails from the templates in
  ``notify.templates_dir`` (``config/templates/``): a ``Subject:`` line, a blank line, the
  body, ``$placeholders`` (:class:`string.Template`). saveLead queues the loan-officer
  e-mail (kind ``email_officer``) in the lead's own transaction; scheduleCall queues the
  visitor's follow-up (kind ``email_visitor``). At most one row per lead and kind (the
  outbox's UNIQUE(kind, ref)).
* CAN-SPAM: the visitor's e-mail carries ``List-Unsubscribe`` (a mailto to
  ``notify.unsubscribe_address``, whose subject names the lead and the kiosk, so the staff
  who read that mailbox know what to run: ``kiosk leads unsubscribe``) and, when
  ``notify.unsubscribe_url`` is set, the one-click URL with ``List-Unsubscribe-Post``
  (RFC 8058); its body says the same and shows the postal address. No visitor e-mail is
  written without an unsubscribe address.

The sender lives apart so that what writes e-mails (the tools, in every visit) does not load
smtplib and the e-mail package's header machinery (about 1 MB resident): only the syncer sends.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

from kiosk.config import BranchSettings, NotifySettings
from kiosk.errors import KioskError
from kiosk.leads.records import LeadRecord, ScoreRecord

if TYPE_CHECKING:
    from pydantic import SecretStr

    from kiosk.leads.deadline import Aborter

OFFICER_KIND = "email_officer"
VISITOR_KIND = "email_visitor"
PAYLOAD_FIELDS = ("to", "subject", "body")
# The only headers a payload may add to a message (the visitor's opt-out, RFC 2369 / 8058).
EXTRA_HEADERS = frozenset({"List-Unsubscribe", "List-Unsubscribe-Post"})
ONE_CLICK = "List-Unsubscribe=One-Click"


class MailRefused(KioskError, ValueError):
    """The SMTP server refused this message for good (5xx for a recipient, sender or content)."""


class MailAuthRefused(KioskError, OSError):
    """The SMTP server refused our credentials (535, 530): a fault of the channel, not of
    this message; the syncer pauses e-mail until the configuration changes."""


class MailError(KioskError, ValueError):
    """An e-mail cannot be written: a bad payload or a bad template. Writers catch this one:
    an e-mail that cannot be written must never cost the lead it is about."""


class EmailPayloadError(MailError):
    """An e-mail payload lacks a field or has a bad one; the message names the field."""


class MailTemplateError(MailError):
    """An e-mail template cannot be read, or uses placeholders the kiosk does not fill."""


@dataclass(frozen=True)
class Email:
    """One e-mail as queued in the outbox and as sent; every field a non-empty string, and
    ``headers`` only those of :data:`EXTRA_HEADERS`, on one line each."""

    to: str
    subject: str
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in PAYLOAD_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise EmailPayloadError(f"e-mail field '{name}' must be a non-empty string")
        if not isinstance(self.headers, Mapping):
            raise EmailPayloadError("e-mail field 'headers' must be an object")
        for name, value in self.headers.items():
            if name not in EXTRA_HEADERS:
                raise EmailPayloadError(f"e-mail header '{name}' is not one the kiosk sets")
            if not isinstance(value, str) or not value.strip() or "\r" in value or "\n" in value:
                raise EmailPayloadError(f"e-mail header '{name}' must be one non-empty line")

    def to_payload(self) -> dict[str, Any]:
        """The outbox row's ``payload_json``."""
        payload: dict[str, Any] = {"to": self.to, "subject": self.subject, "body": self.body}
        if self.headers:
            payload["headers"] = dict(self.headers)
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any] | None) -> Email:
        """Read an outbox payload back; EmailPayloadError names the first missing or bad field."""
        if not isinstance(payload, Mapping):
            raise EmailPayloadError("e-mail payload is missing (expected to, subject and body)")
        for name in PAYLOAD_FIELDS:
            if name not in payload:
                raise EmailPayloadError(f"e-mail payload lacks '{name}'")
        headers = payload.get("headers") or {}  # rows queued before the opt-out headers have none
        return cls(to=payload["to"], subject=payload["subject"], body=payload["body"], headers=headers)


class Mailer(Protocol):
    """Sends one e-mail; raises MailRefused (final) or OSError (try again later)."""

    def send(self, email: Email, *, message_key: str) -> None:
        """Send a plain-text message; ``message_key`` makes its Message-ID stable."""
        ...


class SmtpOnFirstSend:
    """The syncer's :class:`~kiosk.leads.smtp.SmtpMailer`, made when the first e-mail goes out.

    Until then a daemon holds neither smtplib and the e-mail package's policies nor the
    sender's TLS context with the system's CAs (together about 2 MB resident; README
    "Memory"). ``notify.smtp_ca_bundle`` is still checked at start-up (``config check``).
    """

    def __init__(
        self, notify: NotifySettings, password: SecretStr | None, kiosk_id: str, *, aborter: Aborter | None = None
    ) -> None:
        self.notify, self.password, self.kiosk_id, self.aborter = notify, password, kiosk_id, aborter
        self._mailer: Mailer | None = None

    def send(self, email: Email, *, message_key: str) -> None:
        """Send through the SMTP sender (made now if this is the first e-mail)."""
        if self._mailer is None:
            from kiosk.leads.smtp import SmtpMailer

            self._mailer = SmtpMailer(self.notify, self.password, self.kiosk_id, aborter=self.aborter)
        self._mailer.send(email, message_key=message_key)


# -- templates -------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateSpec:
    """A template file, the placeholders the kiosk fills in it and those it must use."""

    name: str
    fields: frozenset[str]
    required: frozenset[str]


_BRANCH_FIELDS = frozenset({"lender_name", "nmls_id", "branch_name"})
OFFICER_TEMPLATE = TemplateSpec(
    "officer_email.txt",
    _BRANCH_FIELDS
    | {"lead_id", "name", "email", "phone", "product_type", "created_at", "kiosk_id", "score_total",
       "disposition", "rubric_version", "reasons"},
    frozenset({"lead_id"}),  # the officer finds the lead in the CRM by its id
)  # fmt: skip
VISITOR_TEMPLATE = TemplateSpec(
    "visitor_email.txt",
    _BRANCH_FIELDS | {"name", "product_name", "booking_url", "postal_address", "unsubscribe_address"},
    frozenset({"booking_url", "postal_address", "unsubscribe_address"}),  # the point of the e-mail, and CAN-SPAM
)


def _parse(path: Path) -> tuple[string.Template, string.Template]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise MailTemplateError(f"e-mail template {path} cannot be read: {reason}") from None
    head, sep, body = text.partition("\n\n")
    subject = head.removeprefix("Subject:").strip()
    if not sep or not head.startswith("Subject:") or "\n" in head or not subject or not body.strip():
        raise MailTemplateError(
            f"e-mail template {path} must be a 'Subject: ...' line, a blank line, then the body"
        )
    return string.Template(subject), string.Template(body)


def _check(path: Path, subject: string.Template, body: string.Template, spec: TemplateSpec) -> None:
    if not (subject.is_valid() and body.is_valid()):
        raise MailTemplateError(f"e-mail template {path} has a bad placeholder ('$' not followed by a name; '$$' is $)")
    used = set(subject.get_identifiers()) | set(body.get_identifiers())
    unknown = sorted(used - spec.fields)
    if unknown:
        raise MailTemplateError(
            f"e-mail template {path} uses unknown placeholder(s) {', '.join('$' + n for n in unknown)}; "
            f"known: {', '.join('$' + n for n in sorted(spec.fields))}"
        )
    missing = sorted(spec.required - used)
    if missing:
        raise MailTemplateError(f"e-mail template {path} must use {', '.join('$' + n for n in missing)}")


def render(templates_dir: Path, spec: TemplateSpec, values: Mapping[str, object]) -> tuple[str, str]:
    """(subject, body) of a template; MailTemplateError when it is unreadable or uses unknown placeholders."""
    path = templates_dir / spec.name
    subject, body = _parse(path)
    _check(path, subject, body, spec)
    fields = {k: "" if v is None else str(v) for k, v in values.items()}
    return subject.substitute(fields), body.substitute(fields)


def check_templates(templates_dir: Path) -> list[str]:
    """One line per problem with the e-mail templates (``kiosk config check``, start-up)."""
    problems = []
    for spec in (OFFICER_TEMPLATE, VISITOR_TEMPLATE):
        try:
            render(templates_dir, spec, dict.fromkeys(spec.fields, "x"))
        except MailTemplateError as exc:
            problems.append(str(exc))
    return problems


def _reason_lines(reasons: list[str]) -> str:
    return "\n".join(f"  - {r}" for r in reasons)


class Composer:
    """Writes the kiosk's e-mails from the templates; the tools get one through their constructors.

    Templates are read at each use, so an edit needs no restart; a template broken on a
    running kiosk raises MailTemplateError and the caller decides (a lead is never lost to it).
    """

    def __init__(self, notify: NotifySettings, branch: BranchSettings) -> None:
        self.notify = notify
        self.branch = branch

    def problems(self) -> list[str]:
        """What is wrong with the templates (empty when nothing)."""
        return check_templates(self.notify.templates_dir)

    def _branch_values(self) -> dict[str, str]:
        b = self.branch
        return {"lender_name": b.lender_name, "nmls_id": b.nmls_id, "branch_name": b.branch_name}

    def officer(self, lead: LeadRecord, score: ScoreRecord) -> Email | None:
        """The loan officer's e-mail for a ``qualified`` lead; None for others or with no officer address."""
        if not self.notify.officer_email or score.disposition != "qualified":
            return None
        subject, body = render(
            self.notify.templates_dir,
            OFFICER_TEMPLATE,
            self._branch_values()
            | {
                "lead_id": lead.id,
                "name": lead.name,
                "email": lead.email,
                "phone": lead.phone,
                "product_type": lead.product_type,
                "created_at": lead.created_at,
                "kiosk_id": lead.kiosk_id,
                "score_total": score.total,
                "disposition": score.disposition,
                "rubric_version": score.rubric_version,
                "reasons": _reason_lines(score.reasons),
            },
        )
        return Email(self.notify.officer_email, subject, body)

    def visitor(
        self, *, to: str, name: str | None, product_name: str, booking_url: str, lead_id: str, kiosk_id: str
    ) -> Email:
        """The visitor's follow-up: the booking link, the postal address and the opt-out CAN-SPAM
        asks for (in the text and as ``List-Unsubscribe``); MailError without an unsubscribe address."""
        address = self.notify.unsubscribe_address
        if not address:
            raise MailError("notify.unsubscribe_address is not set: a visitor e-mail needs an opt-out someone reads")
        subject, body = render(
            self.notify.templates_dir,
            VISITOR_TEMPLATE,
            self._branch_values()
            | {
                "name": name or "there",
                "product_name": product_name,
                "booking_url": booking_url,
                "postal_address": self.notify.postal_address,
                "unsubscribe_address": address,
            },
        )
        return Email(to, subject, body, unsubscribe_headers(self.notify, lead_id, kiosk_id))


def unsubscribe_headers(notify: NotifySettings, lead_id: str, kiosk_id: str) -> dict[str, str]:
    """``List-Unsubscribe`` (the mailto, and the one-click URL when configured) for one lead.

    The mailto's subject and the URL's query name the lead and the kiosk (random ids, no
    personal data): the lender's staff, or its web server, know which lead to stop and where.
    """
    subject = quote(f"unsubscribe lead {lead_id} kiosk {kiosk_id}", safe="")
    links = [f"<mailto:{notify.unsubscribe_address}?subject={subject}>"]
    headers = {}
    if notify.unsubscribe_url:
        url = notify.unsubscribe_url
        links.append(f"<{url}{'&' if '?' in url else '?'}{urlencode({'lead': lead_id, 'kiosk': kiosk_id})}>")
        headers["List-Unsubscribe-Post"] = ONE_CLICK  # RFC 8058: a POST to the URL unsubscribes, no page
    return {"List-Unsubscribe": ", ".join(links), **headers}
