"""Logging for ops: journald with structured fields when it is there, stderr otherwise.

Use ``logging.getLogger(__name__)`` and %-style arguments everywhere. Structured fields go
in ``extra={"kiosk": {"event": "lead_saved", "lead": lead_id}}`` and become journald
fields ``KIOSK_EVENT``, ``KIOSK_LEAD``, ... (upper-cased). E-mail addresses and phone
numbers are redacted from the message text by default: the message is for humans, and
personal data has no place in a log that ops and vendors read.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
IDENTIFIER = "kiosk"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Phone-like runs: 7+ digits with the usual separators, optionally with a leading +.
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d\s().-]{5,}\d(?![\w])")


def redact(text: str) -> str:
    """Replace e-mail addresses and phone numbers with placeholders."""
    text = _EMAIL.sub("<email>", text)
    return _PHONE.sub(lambda m: "<phone>" if sum(c.isdigit() for c in m.group()) >= 7 else m.group(), text)


def event(name: str, **fields: Any) -> dict[str, Any]:
    """Build ``extra=`` for a structured log line: ``log.info("...", extra=event("x", lead=id))``."""
    return {"kiosk": {"event": name, **fields}}


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    """The structured fields attached to a record (empty when none)."""
    value = getattr(record, "kiosk", None)
    return value if isinstance(value, Mapping) else {}


class RedactingFilter(logging.Filter):
    """Redacts PII from the formatted message before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drops a record."""
        if record.args or "@" in str(record.msg) or any(c.isdigit() for c in str(record.msg)):
            record.msg = redact(record.getMessage())
            record.args = None
        return True


class StderrFormatter(logging.Formatter):
    """``LEVEL logger: message [key=value ...]`` with no timestamp of ours under systemd."""

    def __init__(self, with_time: bool) -> None:
        fmt = "%(asctime)s " if with_time else ""
        super().__init__(fmt + "%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Append the structured fields so a plain console still shows them."""
        base = super().format(record)
        extra = fields_of(record)
        if extra:
            base += " [" + " ".join(f"{k}={v}" for k, v in extra.items()) + "]"
        return base


_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def journal_fields(record: logging.LogRecord) -> dict[str, str]:
    """The journal entry of a record, as the kiosk sends it: ``MESSAGE``, ``PRIORITY``,
    ``SYSLOG_IDENTIFIER``, the code location and every structured field as ``KIOSK_*``."""
    msg = record.getMessage()
    if record.exc_info:
        msg += "\n" + logging.Formatter().formatException(record.exc_info)
    return {
        "MESSAGE": msg,
        "PRIORITY": str(_PRIORITY.get(record.levelno, 6)),
        "SYSLOG_IDENTIFIER": IDENTIFIER,
        "LOGGER": record.name,
        "CODE_FILE": record.pathname,
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName,
        **{f"KIOSK_{k.upper()}": str(v) for k, v in fields_of(record).items() if v is not None},
    }


class JournalHandler(logging.Handler):
    """Sends each record to journald with ``KIOSK_*`` fields and ``SYSLOG_IDENTIFIER``."""

    def __init__(self) -> None:
        super().__init__()
        from systemd import journal  # only meaningful with a journal socket

        self._send = journal.send

    def emit(self, record: logging.LogRecord) -> None:
        """Send one record; failures go to logging's own error path, never raise."""
        try:
            fields = journal_fields(record)
            self._send(fields.pop("MESSAGE"), **fields)
        except Exception:  # logging must never take the kiosk down
            self.handleError(record)


class JournalExportHandler(logging.Handler):
    """Writes each record as an entry of the journal export format (what
    ``systemd-journal-upload`` sends), with the fields journald would add for ``unit``.

    ``systemd-journal-remote --output=FILE.journal EXPORT`` turns the stream into a journal
    file that ``journalctl --file`` queries like the real one: the runbook's recipes can be
    run against a demo's log (tests/test_runbook.py does).
    """

    def __init__(self, stream: BinaryIO, unit: str = "kiosk.service", boot_id: str = "") -> None:
        super().__init__()
        self._stream = stream
        self._unit = unit
        self._boot = boot_id.replace("-", "") or "0" * 32

    def emit(self, record: logging.LogRecord) -> None:
        """Append one entry (a blank line ends it)."""
        try:
            fields = {
                "__REALTIME_TIMESTAMP": str(int(record.created * 1e6)),
                "__MONOTONIC_TIMESTAMP": str(time.monotonic_ns() // 1000),
                "_BOOT_ID": self._boot,
                "_PID": str(record.process or os.getpid()),
                "_SYSTEMD_UNIT": self._unit,
                **journal_fields(record),
            }
            self._stream.write(b"".join(_export_field(k, v) for k, v in fields.items()) + b"\n")
            self._stream.flush()
        except Exception:  # logging must never take the kiosk down
            self.handleError(record)


def _export_field(name: str, value: str) -> bytes:
    data = value.encode("utf-8")
    if b"\n" in data:  # the export format's binary form: the length, then the bytes
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def setup_logging(level: str = "INFO", *, redact_pii: bool = True, journal: bool | None = None) -> None:
    """Configure the root logger once, at start-up, from the composition root or CLI.

    ``journal=None`` picks journald when its socket exists and we run under systemd
    (``INVOCATION_ID`` set) and stderr otherwise.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    if journal is None:
        journal = JOURNAL_SOCKET.exists() and "INVOCATION_ID" in os.environ
    handler: logging.Handler
    if journal:
        handler = JournalHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(StderrFormatter(with_time="INVOCATION_ID" not in os.environ))
    if redact_pii:
        handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter ops do not need.
    for noisy in ("websockets", "asyncio", "httpx", "openai", "hpack"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
