"""Logging: PII redaction, structured fields, formats."""

from __future__ import annotations

import logging

import pytest

from kiosk.logs import RedactingFilter, StderrFormatter, event, redact


@pytest.mark.parametrize(("text", "expected"), [
    ("mail jane.doe+x@example.co.uk now", "mail <email> now"),
    ("call (415) 555-0132 today", "call <phone> today"),
    ("call +1 415 555 0132", "call <phone>"),
    ("took 12.5 s, 3 tools, session 42", "took 12.5 s, 3 tools, session 42"),
    ("lead 3f2c9a1e-0b7d-4c1e-9a55-0c2b7d1e4f10 saved", "lead 3f2c9a1e-0b7d-4c1e-9a55-0c2b7d1e4f10 saved"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_filter_redacts_arguments_and_keeps_fields() -> None:
    rec = logging.LogRecord("kiosk.x", logging.INFO, __file__, 1, "saved %s / %s", ("a@b.com", "4155550132"), None)
    rec.__dict__.update(event("lead_saved", lead="L1"))  # what extra= does
    assert RedactingFilter().filter(rec)
    assert rec.getMessage() == "saved <email> / <phone>"
    line = StderrFormatter(with_time=False).format(rec)
    assert line == "INFO kiosk.x: saved <email> / <phone> [event=lead_saved lead=L1]"
