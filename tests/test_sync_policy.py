"""Pure parts of the syncer: backoff, Retry-After, signatures, reply classification, clock jumps."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kiosk.config import SyncSettings
from kiosk.leads import outbox as ob
from kiosk.leads.crm import RETRY_AFTER_MAX_S, classify_reply, is_retryable_status, parse_retry_after, sign
from kiosk.leads.http import HttpReply
from tests.synckit import ManualClock, save_leads

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("Sat, 01 Mar 2025 12:02:30 GMT", NOW) == 150.0
    assert parse_retry_after("Sat, 01 Mar 2025 11:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_retry_after_junk_is_never_an_error_and_always_bounded() -> None:
    """The header is the server's to write: Unicode digits (which str.isdigit() accepts and
    float() refuses), signs, exponents, absurd numbers and dates are a bounded delay or none."""
    for junk in ("²", "٣", "-5", "1e9", "5, 6", "\x00", "Mon, 32 Foo 2020 99:99:99", "Wed, 21 Oct 99999 07:28:00 GMT"):
        assert parse_retry_after(junk, NOW) is None, junk
    assert parse_retry_after("9" * 400, NOW) == RETRY_AFTER_MAX_S
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW) == RETRY_AFTER_MAX_S
    assert parse_retry_after(" 7 ", NOW) == 7.0


@pytest.mark.parametrize(("status", "retry"), [(408, True), (429, True), (500, True), (503, True),
                                               (400, False), (404, False), (422, False)])
def test_which_statuses_are_retried(status: int, retry: bool) -> None:
    assert is_retryable_status(status) is retry
    outcome, reason, _ = classify_reply(HttpReply(status, {}, b"nope"), NOW)
    assert outcome == ("retry" if retry else "dead") and reason == f"HTTP {status}: nope"


@pytest.mark.parametrize("status", [401, 403, 407, 301, 302, 307, 308])
def test_credentials_and_redirects_pause_the_channel_instead_of_killing_leads(status: int) -> None:
    outcome, reason, _ = classify_reply(HttpReply(status, {"location": "https://elsewhere.example/x"}, b""), NOW)
    assert outcome == "pause"
    assert ("credentials" in reason) if status in (401, 403, 407) else ("elsewhere.example" in reason)


def test_reply_reason_is_redacted() -> None:
    _, reason, _ = classify_reply(HttpReply(400, {}, b"bad email jane@example.com phone +1 415 555 0132"), NOW)
    assert "jane" not in reason and "555" not in reason


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(b"k", "1700000000", b"{}") == f"v1={expected}"


def test_not_before_times_round_up() -> None:
    assert ob.iso_ceil(NOW + timedelta(milliseconds=1)) == "2025-03-01T12:00:01+00:00"
    assert ob.iso_ceil(NOW) == "2025-03-01T12:00:00+00:00"


def test_a_schedule_from_a_wrong_clock_does_not_strand_a_row(tmp_path: Path) -> None:
    from kiosk.leads.store import Store

    store = Store(tmp_path / "k.db")
    save_leads(store, 1)
    clock = ManualClock()
    rows = ob.due(store, ("lead",), clock.now(), 10, force=False, horizon_s=60)
    # Written while the Pi's clock was a year ahead, before NTP corrected it:
    ob.mark_retry(store, rows, clock.now() + timedelta(days=365), "network")
    assert ob.due(store, ("lead",), clock.now(), 10, force=False, horizon_s=4000)
    ob.mark_retry(store, rows, clock.now() + timedelta(seconds=30), "network")
    assert not ob.due(store, ("lead",), clock.now(), 10, force=False, horizon_s=4000)
    assert ob.due(store, ("lead",), clock.now(), 10, force=True, horizon_s=4000)


def test_plain_http_only_to_localhost() -> None:
    assert SyncSettings(endpoint="http://127.0.0.1:8088/leads").endpoint
    with pytest.raises(ValueError, match="https"):
        SyncSettings(endpoint="http://crm.example.com/leads")
