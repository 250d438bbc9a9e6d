"""The syncer against the reference receiver over real HTTPS on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from kiosk.leads import outbox as ob
from kiosk.leads.crm import build_batch, lead_document
from kiosk.leads.store import Store
from kiosk.leads.sync import DrainReport
from kiosk.logs import fields_of
from tests.synckit import (
    ManualClock,
    free_port,
    make_cert,
    make_syncer,
    save_leads,
    serve_receiver,
    sync_settings,
)
from tests.toolkit import DEAL, DRAFT, call, make_ctx, make_registry

# The schema as the package ships it (what a CRM integrator gets with an installed kiosk).
SCHEMA = json.loads((files("kiosk") / "schemas" / "lead-batch.schema.json").read_text(encoding="utf-8"))


def states(store: Store) -> dict[str, int]:
    return dict(store.conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())


def test_thousand_leads_queued_while_down_arrive_exactly_once(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    store = Store(tmp_path / "k.db")
    ids = save_leads(store, 1000)
    port = free_port()
    clock = ManualClock()
    syncer = make_syncer(store, sync_settings(f"https://127.0.0.1:{port}/leads", cert[0], batch_size=50), clock)

    down = syncer.drain()
    assert down.sent == 0 and down.retried == 50  # one batch tried, then the channel pauses
    assert syncer.drain().retried == 0  # still paused: no hammering of a dead endpoint
    assert states(store) == {"pending": 1000}
    assert "network" in (syncer.status().last_error or "")

    with serve_receiver(tmp_path / "r.db", cert, port) as rx:
        clock.advance(syncer.sync.backoff_cap_s + 1)
        up = syncer.drain()
        assert up.sent == 1000 and up.ok
        stored = rx.receiver.stored()
    assert sorted(stored) == sorted(ids)  # each id is a primary key there: at most once, and all arrived
    assert states(store) == {"sent": 1000}
    status = syncer.status()
    assert (status.pending_leads, status.dead_leads, status.last_success_at) == (0, 0, clock.now().isoformat())
    lead_schema = {"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"], "$ref": "#/$defs/lead"}
    for doc in list(stored.values())[:50]:
        jsonschema.validate(doc, lead_schema)


def test_a_lead_the_tool_saved_reaches_the_receiver_as_the_schema_says(
    tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    """The pair: saveLead writes the lead, the syncer turns it into the CRM document, the
    reference receiver stores it; what arrived is valid against the shipped schema and says
    what the visitor said."""
    store = Store(tmp_path / "k.db")
    ctx = make_ctx(store, "visit-77")
    registry = make_registry()
    call(registry, "analyzeDeal", DEAL, ctx)
    lead_id = call(registry, "saveLead", {"leadDraft": DRAFT}, ctx)["leadId"]
    with serve_receiver(tmp_path / "r.db", cert) as rx:
        syncer = make_syncer(store, sync_settings(rx.url, cert[0]), ManualClock())
        assert syncer.drain().sent == 1
        stored = rx.receiver.stored()
    doc = stored[lead_id]
    lead_schema = {"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"], "$ref": "#/$defs/lead"}
    jsonschema.validate(doc, lead_schema)
    assert doc["session_id"] == "visit-77" and doc["product_type"] == DRAFT["productType"]
    assert doc["contact"]["email"] == "Jane.Doe@example.com" and doc["contact"]["phone"] == "+14155550132"
    assert doc["consent"]["visitor_words"] == "Yes, I agree." and doc["analysis"]["dscr"] > 1
    assert doc["score"]["rubric_version"]


def test_batch_validates_against_the_json_schema(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    store.conn.execute(
        "INSERT INTO scores (lead_id, created_at, total, disposition, points_json, reasons_json, rubric_version) "
        "VALUES (?, '2025-01-01T00:00:00+00:00', 82, 'qualified', '{\"fit\": 25}', '[\"DSCR_OK\"]', 'r1')",
        [lead_id],
    )
    doc = lead_document(store, lead_id)
    assert doc is not None and doc["score"]["disposition"] == "qualified"
    jsonschema.validate(build_batch("k1", [doc], ManualClock().now()), SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(build_batch("k1", [{**doc, "product_type": "mortgage"}], ManualClock().now()), SCHEMA)


def test_refused_credentials_pause_the_channel_keep_the_leads_and_resume_on_a_new_configuration(
    tmp_path: Path, cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 is our configuration's fault, not the leads': one request, one ERROR, the leads stay
    pending (not dead-lettered), status says so, and a changed configuration resumes delivery."""
    store = Store(tmp_path / "k.db")
    ids = save_leads(store, 3)
    clock = ManualClock()
    with serve_receiver(tmp_path / "r.db", cert) as rx:
        sync = sync_settings(rx.url, cert[0])
        syncer = make_syncer(store, sync, clock, secret="not-the-receivers-secret")
        with caplog.at_level(logging.INFO, logger="kiosk.leads"):
            report = syncer.drain()
            assert (report.sent, report.dead, report.retried) == (0, 0, 0) and report.paused and not report.ok
            assert rx.receiver.requests == 1  # not one request per lead
            clock.advance(60)
            assert not syncer.drain().paused  # paused: nothing tried, nothing said
            assert rx.receiver.requests == 1
            # A restart with the same configuration stays paused but probes once.
            again = make_syncer(store, sync, clock, secret="not-the-receivers-secret")
            assert again.status().crm_paused and again.drain().paused and rx.receiver.requests == 2
        paused = [fields_of(r) for r in caplog.records if fields_of(r).get("event") == "sync_paused"]
        assert len(paused) == 1  # said once, even across the restart
        assert all(r.levelno == logging.ERROR for r in caplog.records if fields_of(r).get("event") == "sync_paused")
        assert not [r for r in caplog.records if fields_of(r).get("event") == "sync_dead_letter"]
        assert states(store) == {"pending": 3}
        line = syncer.status().line()
        assert "CRM PAUSED until the configuration changes" in line and "HTTP 401" in line, line
        # The credential is fixed: the new configuration resumes at once.
        fixed = make_syncer(store, sync, clock)
        assert fixed.drain().sent == 3
        assert set(rx.receiver.stored()) == set(ids)
    assert states(store) == {"sent": 3}
    assert fixed.status().crm_paused is None and "PAUSED" not in fixed.status().line()


def test_400_dead_letters_only_the_refused_lead_of_a_batch(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    store = Store(tmp_path / "k.db")
    first, second = save_leads(store, 2)
    clock = ManualClock()
    with serve_receiver(tmp_path / "r.db", cert) as rx:
        rx.receiver.faults.extend([(400, {}), (400, {})])  # the batch, then the first lead alone
        syncer = make_syncer(store, sync_settings(rx.url, cert[0]), clock)
        report = syncer.drain()
        assert (report.sent, report.dead) == (1, 1)
        assert list(rx.receiver.stored()) == [second]
        clock.advance(86400)
        before = rx.receiver.requests
        syncer.drain()
        assert rx.receiver.requests == before
    row = store.conn.execute("SELECT state, last_error FROM outbox WHERE ref = ?", [first]).fetchone()
    assert row[0] == "dead" and row[1].startswith("HTTP 400")


def test_429_retry_after_is_honoured(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    clock = ManualClock()
    with serve_receiver(tmp_path / "r.db", cert) as rx:
        rx.receiver.faults.append((429, {"Retry-After": "120"}))
        # rand=0 would make the jittered backoff 0 s: only Retry-After can hold the lead back.
        syncer = make_syncer(store, sync_settings(rx.url, cert[0]), clock, rand=0.0)
        assert syncer.drain().retried == 1
        clock.advance(119)
        assert syncer.drain().sent == 0
        assert rx.receiver.requests == 1
        clock.advance(1)
        assert syncer.drain().sent == 1
        assert list(rx.receiver.stored()) == [lead_id]
    assert states(store) == {"sent": 1}


def test_lost_response_is_resent_and_stored_once(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    clock = ManualClock()
    with serve_receiver(tmp_path / "r.db", cert) as rx:
        rx.receiver.faults.append((0, {}))  # stores, then drops the connection before answering
        syncer = make_syncer(store, sync_settings(rx.url, cert[0]), clock)
        assert syncer.drain().retried == 1
        clock.advance(syncer.sync.backoff_cap_s)
        assert syncer.drain().sent == 1
        assert rx.receiver.requests == 2 and list(rx.receiver.stored()) == [lead_id]


def test_untrusted_certificate_is_refused_and_retried(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    other_ca, _ = make_cert(tmp_path)  # a CA bundle that did not sign the server's certificate
    store = Store(tmp_path / "k.db")
    save_leads(store, 1)
    with serve_receiver(tmp_path / "r.db", cert) as rx:
        syncer = make_syncer(store, sync_settings(rx.url, other_ca), ManualClock())
        report = syncer.drain()
        assert report.retried == 1 and "CERTIFICATE_VERIFY_FAILED" in report.errors[0]
        assert rx.receiver.stored() == {}


def test_stale_timestamp_is_refused_by_the_receiver(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    store = Store(tmp_path / "k.db")
    save_leads(store, 1)
    clock = ManualClock()
    clock.advance(-3600)  # the kiosk's clock is an hour behind: a replayed or forged request looks like this
    with serve_receiver(tmp_path / "r.db", cert, max_skew_s=300) as rx:
        syncer = make_syncer(store, sync_settings(rx.url, cert[0]), clock)
        report = syncer.drain()
        assert (report.dead, report.sent) == (0, 0) and report.paused  # the lead is not at fault: it waits
        assert rx.receiver.stored() == {}
        clock.advance(3600)  # NTP fixed the clock: past the pause's probe time (backoff_cap_s), it goes through
        assert syncer.sync.backoff_cap_s < 3600
        assert syncer.drain().sent == 1
        assert len(rx.receiver.stored()) == 1


class Passes:
    """Counts the run loop's passes; tests wait on it instead of polling."""

    def __init__(self) -> None:
        self.reports: list[DrainReport] = []
        self.changed = asyncio.Condition()

    def __call__(self, report: DrainReport) -> None:
        self.reports.append(report)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(predicate)


async def test_pending_lead_survives_a_restart_and_goes_out_after_a_kick(
    tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    db = tmp_path / "k.db"
    port = free_port()
    url = f"https://127.0.0.1:{port}/leads"
    clock = ManualClock()
    store = Store(db)
    (lead_id,) = save_leads(store, 1)
    passes = Passes()
    first = make_syncer(Store(db), sync_settings(url, cert[0]), clock)
    first.on_pass = passes
    task = asyncio.create_task(first.run())
    await passes.wait(lambda: len(passes.reports) >= 1)
    assert passes.reports[0].retried == 1  # the endpoint is down
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    first.close()
    assert states(store) == {"pending": 1}

    with serve_receiver(tmp_path / "r.db", cert, port) as rx:
        clock.advance(3600)
        passes = Passes()
        second = make_syncer(Store(db), sync_settings(url, cert[0], interval_s=3600), clock)
        second.on_pass = passes
        task = asyncio.create_task(second.run())
        try:
            await passes.wait(lambda: sum(r.sent for r in passes.reports) >= 1)
            assert list(rx.receiver.stored()) == [lead_id]
            # A lead saved while the loop sleeps its hour goes out on kick().
            (new_id,) = save_leads(store, 1)
            second.kick()
            await passes.wait(lambda: sum(r.sent for r in passes.reports) >= 2)
            assert sorted(rx.receiver.stored()) == sorted([lead_id, new_id])
            assert second.status().pending_leads == 0
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            second.close()


def test_status_line_has_counts_and_no_personal_data(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    save_leads(store, 2)
    ob.set_state(store, last_error="crm: HTTP 503: busy", last_error_at="2025-01-01T00:00:00+00:00")
    line = ob.sync_status(store.conn).line()
    assert line == "2 lead(s) waiting for upload; never synced; error: crm: HTTP 503: busy"
    assert "@" not in line and "Visitor" not in line


def test_fleet_documents_follow_the_leads_and_a_refused_one_waits_for_a_person(
    tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    """Daily stats and heartbeats take the leads' channel after them: a receiver that refuses
    one (a CRM that only takes leads) dead-letters it without holding anything else up, and
    a pause for a 503 holds documents like leads."""
    store = Store(tmp_path / "k.db")

    def documents(day: str) -> None:
        doc = {"schema": "kiosk.daily-stats/1", "id": f"k1/{day}", "kiosk_id": "k1", "day": day}
        store.enqueue(ob.DAILY_KIND, day, doc)
        beat = {"schema": "kiosk.heartbeat/1", "id": f"k1/heartbeat/{day}", "kiosk_id": "k1"}
        store.enqueue(ob.HEARTBEAT_KIND, day, beat)

    documents("2026-01-05")
    (lead,) = save_leads(store, 1)  # queued after the documents, sent before them
    clock = ManualClock()
    with serve_receiver(tmp_path / "r.db", cert) as rx:
        syncer = make_syncer(store, sync_settings(rx.url, cert[0]), clock)
        assert syncer.drain().sent == 3
        rdb = sqlite3.connect(tmp_path / "r.db")
        order = [r[0] for r in rdb.execute("SELECT idempotency_key FROM deliveries ORDER BY n")]
        rdb.close()
        assert order == [lead, "k1/2026-01-05", "k1/heartbeat/2026-01-05"]
        documents("2026-01-06")
        rx.receiver.faults.extend([(400, {}), (503, {"Retry-After": "30"})])  # the day refused, the heartbeat paused
        report = syncer.drain()
        assert (report.sent, report.dead, report.retried) == (0, 1, 1)
        assert syncer.drain().sent == 0  # Retry-After holds the channel
        clock.advance(31)
        assert syncer.drain().sent == 1
        beats = rx.receiver.documents("heartbeats")
    assert sorted(beats) == ["k1/heartbeat/2026-01-05", "k1/heartbeat/2026-01-06"]
    states = dict(store.conn.execute("SELECT ref, state FROM outbox WHERE kind = ?", (ob.DAILY_KIND,)).fetchall())
    assert states == {"2026-01-05": "sent", "2026-01-06": "dead"}  # for `kiosk leads list --state dead`
    assert syncer.status().pending_mail == 0  # documents are not e-mail
