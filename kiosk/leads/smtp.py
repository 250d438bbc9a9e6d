"""The SMTP sender: the syncer's, never a visit's (README "Memory": smtplib and the e-mail
package's policies load only where e-mail is sent).

:class:`SmtpMailer` sends over STARTTLS. Delivery is at least once: a crash after the server
accepted a message and before the row is marked sent sends it again, with the same
``Message-ID`` so mail clients can fold it.
"""

from __future__ import annotations

import contextlib
import email.policy
import hashlib
import smtplib
from email.message import EmailMessage
from email.utils import formatdate

from pydantic import SecretStr

from kiosk.config import NotifySettings
from kiosk.leads.deadline import Aborter, Cutoff
from kiosk.leads.http import tls_context
from kiosk.leads.mail import Email, MailAuthRefused, MailRefused

AUTH_CODES = frozenset({530, 534, 535, 538})
# Headers folded only past RFC 5322's 998-character limit: the default 78 would RFC 2047-encode
# a long List-Unsubscribe URI, which mail providers then cannot read.
POLICY = email.policy.default.clone(max_line_length=998)


class _Smtp(smtplib.SMTP):
    """An SMTP client not yet connected that knows its host (STARTTLS checks the certificate
    against it; only connecting in the constructor would set it)."""

    def __init__(self, host: str, timeout_s: float) -> None:
        super().__init__(timeout=timeout_s)
        self._host = host


class SmtpMailer:
    """smtplib over STARTTLS with certificate checks; never sends in clear."""

    def __init__(
        self, notify: NotifySettings, password: SecretStr | None, kiosk_id: str, *, aborter: Aborter | None = None
    ) -> None:
        self.s = notify
        self.aborter = aborter
        self._password = password.get_secret_value() if password else ""
        self.kiosk_id = kiosk_id
        self.context = tls_context(notify.smtp_ca_bundle)

    def message(self, email: Email, message_key: str) -> EmailMessage:
        """The message as sent."""
        msg = EmailMessage()
        msg["From"] = self.s.from_address
        msg["To"] = email.to
        msg["Subject"] = email.subject
        msg["Date"] = formatdate(usegmt=True)
        digest = hashlib.sha256(message_key.encode()).hexdigest()[:32]
        msg["Message-ID"] = f"<{digest}@{self.kiosk_id}.kiosk.invalid>"
        for name, value in email.headers.items():
            msg[name] = value
        msg.set_content(email.body)  # under the default policy: the body's encoding as ever
        msg.policy = POLICY  # the headers are folded when the message is written out
        return msg

    def send(self, email: Email, *, message_key: str) -> None:
        """Connect, STARTTLS, log in when configured, send, all within ``smtp_timeout_s``.

        MailRefused on a permanent refusal of this message, MailAuthRefused when the server
        refuses our credentials, OSError (TimeoutError past the deadline) when it may pass later.
        """
        msg = self.message(email, message_key)
        smtp = _Smtp(self.s.smtp_host, self.s.smtp_timeout_s)  # not connected yet: the cutoff watches it first
        try:
            with Cutoff(self.s.smtp_timeout_s, lambda: smtp.sock, self.aborter):
                try:
                    smtp.connect(self.s.smtp_host, self.s.smtp_port)
                    self._converse(smtp, msg)
                finally:
                    smtp.close()
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if any(code in AUTH_CODES for code in codes):
                raise MailAuthRefused(f"SMTP server wants a login ({', '.join(map(str, codes))})") from None
            if any(code >= 500 for code in codes):
                raise MailRefused(f"recipient refused ({', '.join(map(str, codes))})") from None
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise MailAuthRefused(f"SMTP login refused ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code in AUTH_CODES:  # "authentication required": ours to fix, not the message's
                raise MailAuthRefused(f"SMTP server wants a login ({exc.smtp_code})") from None
            if exc.smtp_code >= 500:
                err = exc.smtp_error
                text = err.decode("utf-8", "replace") if isinstance(err, bytes) else err
                raise MailRefused(f"{exc.smtp_code} {text}") from None
            raise

    def _converse(self, smtp: smtplib.SMTP, msg: EmailMessage) -> None:
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            raise smtplib.SMTPNotSupportedError("server does not offer STARTTLS; not sending in clear")
        smtp.starttls(context=self.context)
        smtp.ehlo()
        if self.s.smtp_username:
            smtp.login(self.s.smtp_username, self._password)
        smtp.send_message(msg)
        # Accepted: say goodbye without waiting for the reply, which changes nothing now.
        with contextlib.suppress(OSError):
            smtp.send("QUIT\r\n")
