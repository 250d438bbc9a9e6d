"""Retention: personal data of synced leads goes first; consent evidence stays for its own period."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from kiosk.config import RetentionSettings
from kiosk.leads import outbox as ob
from kiosk.leads.retention import purge
from kiosk.leads.store import Store
from tests.synckit import ManualClock, save_leads

RETENTION = RetentionSettings(personal_data_days=30, consent_days=1461)


def test_synced_leads_lose_personal_data_after_n_days_but_keep_consent(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    synced, unsynced = save_leads(store, 2)
    store.enqueue("email_visitor", synced, {"to": "visitor0@example.com", "subject": "s", "body": "b"})
    clock = ManualClock()
    rows = ob.due(store, ("lead", "email_visitor"), clock.now(), 10, force=True, horizon_s=0)
    ob.mark_sent(store, [r for r in rows if r.ref == synced], clock.now())

    clock.advance(29 * 86400)
    assert purge(store, RETENTION, clock.now()).purged == 0
    clock.advance(86400 + 1)
    assert purge(store, RETENTION, clock.now()).purged == 1
    lead = store.lead(synced)
    assert lead is not None and (lead["name"], lead["email"], lead["phone"]) == (None, None, None)
    assert lead["purged_at"] == ob.iso(clock.now())
    consent = store.consent(synced)
    assert consent is not None and consent["phone"] == "+14155550000"  # evidence still names the number
    assert consent["visitor_words"] == "Yes, I agree."
    assert store.count("outbox", "ref = ? AND payload_json IS NOT NULL", (synced,)) == 0
    kept = store.lead(unsynced)
    assert kept is not None and kept["email"] == "visitor1@example.com"  # not at the CRM yet: kept
    assert purge(store, RETENTION, clock.now()).purged == 0  # idempotent


def test_everything_goes_after_the_consent_period(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    clock = ManualClock()
    clock.advance(1460 * 86400)
    assert purge(store, RETENTION, clock.now()).deleted == 0
    clock.advance(86400 + 1)
    assert purge(store, RETENTION, clock.now()).deleted == 1
    assert store.lead(lead_id) is None and store.consent(lead_id) is None
    assert store.count("outbox") == 0


def test_consent_retention_cannot_be_shorter_than_tcpa_period() -> None:
    with pytest.raises(ValidationError):
        RetentionSettings(consent_days=365)
    from kiosk.errors import ConfigError
    from tests.toolkit import checkout_settings

    with pytest.raises(ConfigError) as err:
        checkout_settings({"retention": {"consent_days": 1000}})
    assert "retention.consent_days" in err.value.problems[0] and "4-year" in err.value.problems[0]
    assert timedelta(days=RetentionSettings().consent_days) >= timedelta(days=4 * 365)


def test_visit_records_go_with_the_consent_evidence(tmp_path: Path) -> None:
    from kiosk.fleet.records import add_state_time, save_visit
    from kiosk.fleet.visits import refused

    store = Store(tmp_path / "k.db")
    clock = ManualClock()
    old_day = (clock.now() - timedelta(days=1462)).date().isoformat()
    save_visit(store, refused("old", old_day, ob.iso(clock.now() - timedelta(days=1462)), "unavailable"))
    save_visit(store, refused("recent", clock.now().date().isoformat(), ob.iso(clock.now()), "unavailable"))
    add_state_time(store, old_day, "offline", 60.0)
    add_state_time(store, clock.now().date().isoformat(), "offline", 30.0)
    result = purge(store, RETENTION, clock.now())
    assert result.visits == 1
    assert [r[0] for r in store.conn.execute("SELECT id FROM visits")] == ["recent"]
    assert [r[0] for r in store.conn.execute("SELECT seconds FROM state_time")] == [30.0]


def test_dead_lettered_leads_follow_the_lead_schedule(tmp_path: Path) -> None:
    # The CRM refused the lead for good: its personal data must not sit here for the 4 consent years.
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    clock = ManualClock()
    ob.mark_dead(store, ob.due(store, ("lead",), clock.now(), 10, force=True, horizon_s=0), "HTTP 422")
    clock.advance(29 * 86400)
    assert purge(store, RETENTION, clock.now()).purged == 0
    clock.advance(86400 + 5)
    assert purge(store, RETENTION, clock.now()).purged == 1
    lead = store.lead(lead_id)
    assert lead is not None and lead["email"] is None
    consent = store.consent(lead_id)
    assert consent is not None and consent["phone"] == "+14155550000"
