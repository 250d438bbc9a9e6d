"""Helpers for the e-mail tests: a real SMTP server (aiosmtpd) with STARTTLS and login on
loopback that keeps what arrives, and the notify settings and syncer that talk to it."""

from __future__ import annotations

import email
import email.message
import email.policy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from kiosk.config import NotifySettings, RetentionSettings, Secrets, SyncSettings
from kiosk.leads.store import Store
from kiosk.leads.sync import Clock, Syncer
from tests.synckit import server_tls
from tests.toolkit import CHECKOUT_CONFIG, UNSUBSCRIBE

TEMPLATES = CHECKOUT_CONFIG.parent / "templates"
SMTP_USER, SMTP_PASSWORD = "kiosk", "smtp-pw"
OFFICER = "lo@lender.example"


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

    def to(self, address: str) -> list[email.message.EmailMessage]:
        """The messages that reached ``address``."""
        return [msg for _, rcpt, msg in self.messages if address in rcpt]


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
    return AuthResult(success=ok)


class Smtp:
    """The server for a ``with`` block; ``starttls=False`` offers no STARTTLS at all."""

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


def smtp_values(port: int, ca: Path, **kw: Any) -> dict[str, Any]:
    """[notify] values that reach the test server (for settings overrides)."""
    return {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_username": SMTP_USER, "smtp_ca_bundle": ca,
            "smtp_timeout_s": 5.0, "from_address": "kiosk@lender.example", "officer_email": OFFICER,
            "unsubscribe_address": UNSUBSCRIBE,
            "templates_dir": TEMPLATES, **kw}  # fmt: skip


def notify_settings(port: int, ca: Path, **kw: Any) -> NotifySettings:
    """Notify settings that reach the test server, with the shipped templates."""
    return NotifySettings(**smtp_values(port, ca, **kw))


def smtp_secrets() -> Secrets:
    """The credentials the test server accepts."""
    return Secrets(smtp_password=SecretStr(SMTP_PASSWORD))


def mailer_syncer(store: Store, notify: NotifySettings, clock: Clock) -> Syncer:
    """A syncer that only sends e-mail (no CRM endpoint), with a fixed clock and no jitter."""
    return Syncer(store, "k1", SyncSettings(), notify, RetentionSettings(), smtp_secrets(),
                  clock=clock, rand=lambda: 1.0)  # fmt: skip
