"""The lender's numbers and the fleet's health, piece by piece: a visit's stages from what
happened (never the visitor's words), the link's warning, the report's arithmetic, and the
Prometheus textfile as promtool and the shipped Grafana dashboard read it."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from kiosk import conversation as cv
from kiosk.config.identity import machine_kiosk_id
from kiosk.fleet import prom
from kiosk.fleet.link import LinkHealth
from kiosk.fleet.report import build, day_range, render_csv, render_text
from kiosk.fleet.visits import VisitRecord, VisitTracker, refused
from kiosk.leads.store import Store
from kiosk.realtime import session as rs
from kiosk.runtime.visit_log import VisitLog

REPO = Path(__file__).resolve().parent.parent
DISCLOSURE = "Example Lending may call you. Consent is not a condition of any loan. Do you agree?"
SECRET_WORDS = "Zanzibar-4471"  # what a visitor says must never reach a record
KB = json.dumps({"results": [{"title": "DSCR loans: documents", "source": "DSCR", "text": "..."},
                             {"title": "Fix and flip: ARV", "source": "Flip", "text": "..."}]})  # fmt: skip
OK, ERROR = '{"leadId": "x"}', '{"error": "no", "fix": "ask"}'


def tracker() -> VisitTracker:
    return VisitTracker("v1", "2026-01-05", "2026-01-05T10:00:00+00:00")


def end(t: VisitTracker) -> VisitRecord:
    return t.end("button", "2026-01-05T10:05:00+00:00", 300.0, input_tokens=10, output_tokens=5, cost_usd=0.2)


def test_a_visit_that_agreed_reaches_lead_saved_and_keeps_no_visitor_words() -> None:
    t = tracker()
    t.first_audio(850.0, warm=True)
    t.transcript("assistant", "Hi! How can I help?")
    t.transcript("visitor", f"My name is {SECRET_WORDS}, run my numbers")
    t.tool("analyzeDeal", '{"dscr": 1.3}')
    t.tool("searchKnowledgeBase", KB)
    t.tool("searchKnowledgeBase", KB)  # the same sections again: counted once
    t.transcript("assistant", DISCLOSURE)
    t.transcript("visitor", f"Yes, {SECRET_WORDS} agrees")
    t.transcript("assistant", "Saving that for you now.")  # speaking before the tool is not a no
    t.tool("saveLead", OK)
    t.tool("scheduleCall", OK)
    r = end(t)
    assert r.stages == ("pressed", "greeted", "asked", "ran_numbers", "consent_offered", "lead_saved", "call_scheduled")
    assert r.stage == "call_scheduled"
    assert (r.consent_offers, r.consent_declines) == (1, 0)
    assert r.tools == {"analyzeDeal": 1, "searchKnowledgeBase": 2, "saveLead": 1, "scheduleCall": 1}
    assert r.topics == ("DSCR loans: documents", "Fix and flip: ARV")
    assert (r.first_audio_ms, r.warm, r.cost_usd) == (850.0, True, 0.2)
    assert SECRET_WORDS not in json.dumps(r.row())
    assert VisitRecord.from_row(r.row()) == r


def test_a_no_then_a_yes_counts_one_decline_and_the_lead() -> None:
    t = tracker()
    t.transcript("assistant", DISCLOSURE)
    t.transcript("visitor", "No thanks.")
    t.transcript("assistant", "No problem, I won't save anything.")
    t.transcript("visitor", "Actually, yes I agree.")  # spoke again after an answer that saved nothing
    t.tool("saveLead", OK)
    r = end(t)
    assert (r.consent_offers, r.consent_declines, r.stage) == (1, 1, "lead_saved")
    assert "consent_declined" in r.stages


def test_declines_and_non_answers() -> None:
    walked = tracker()
    walked.transcript("assistant", DISCLOSURE.upper())  # the marker is found in any case and spacing
    assert end(walked).stage == "consent_offered"  # no answer: not a decline
    answered = tracker()
    answered.transcript("assistant", DISCLOSURE)
    answered.transcript("visitor", "no")
    assert end(answered).stage == "consent_declined"  # answered and left without a save
    refused_save = tracker()
    refused_save.transcript("assistant", DISCLOSURE)
    refused_save.transcript("visitor", "yes")
    refused_save.tool("saveLead", ERROR)  # the tool refused (bad phone): no lead
    refused_save.tool("analyzeDeal", ERROR)
    r = end(refused_save)
    assert r.stage == "consent_declined" and "ran_numbers" not in r.stages
    assert r.tools == {"saveLead": 1, "analyzeDeal": 1}


def test_a_refused_press_is_a_visit_of_no_length() -> None:
    r = refused("r1", "2026-01-05", "2026-01-05T10:00:00+00:00", "unavailable")
    assert (r.duration_s, r.end_reason, r.stages, r.stage) == (0.0, "unavailable", ("pressed",), "pressed")


def test_the_link_warns_once_and_says_when_it_is_back() -> None:
    link = LinkHealth(warn_after_s=300)
    link.failed(0)
    link.failed(100)
    assert link.due_warning(299) is None and not link.up
    assert link.due_warning(300) == 300
    assert link.due_warning(400) is None  # once
    assert link.ok(500) == 500 and link.up and link.failures == 2
    link.failed(600)
    assert link.ok(601) is None  # a blip nobody was warned about


async def test_visit_log_writes_records_and_downtime_off_the_loop_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "k.db")
    now = [100.0]
    books = VisitLog(store, lambda usage: 0.0, today=lambda: "2026-01-05", clock=lambda: now[0], link_warn_s=60)
    books.started("v1")
    books.transcript("visitor", SECRET_WORDS)
    books.ended("v1", cv.EndReason.OFFLINE, 0.5, rs.Usage())
    books.refused("r1", cv.EndReason.UNAVAILABLE)
    books.handled(cv.ConnectFailed("down"), cv.State.OFFLINE)
    caplog.set_level(logging.INFO, logger="kiosk.runtime.visit_log")
    now[0] = 161.0
    books.check_link()
    books.handled(cv.NetworkRestored(), cv.State.IDLE)
    await books.close()
    rows = store.conn.execute("SELECT id, end_reason, stage FROM visits ORDER BY id").fetchall()
    assert rows == [("r1", "unavailable", "pressed"), ("v1", "offline", "asked")]
    assert store.conn.execute("SELECT day, state, seconds FROM state_time").fetchall() == [
        ("2026-01-05", "offline", 61.0)
    ]
    events = [(r.levelname, r.kiosk["event"]) for r in caplog.records if r.name == "kiosk.runtime.visit_log"]  # type: ignore[attr-defined]
    assert events == [("WARNING", "link_down"), ("INFO", "link_restored")]
    store.close()


def test_report_days_and_sums() -> None:
    today = date(2026, 1, 7)
    assert day_range("today", today) == ["2026-01-07"]
    assert day_range("3d", today) == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert day_range("2026-01-06", today) == ["2026-01-06", "2026-01-07"]
    for bad in ("tomorrow", "2026-02-01", "x7d"):
        with pytest.raises(ValueError, match="--since"):
            day_range(bad, today)
    lead = tracker()
    lead.tool("searchKnowledgeBase", KB)
    lead.tool("saveLead", OK)
    visits = [end(lead), refused("r1", "2026-01-05", "2026-01-05T11:00:00+00:00", "unavailable")]
    days = day_range("3d", today)
    report = build("k1", days, visits, {"2026-01-05": 1}, {"2026-01-05": 6.0, "2026-01-06": 2.0},
                   {"2026-01-06": {"offline": 600.0}}, 50.0)  # fmt: skip
    d5, d6, _ = report.days
    assert (d5.visits, d5.leads, d5.conversion, d5.cost_per_lead_usd, d5.median_duration_s) == (2, 1, 0.5, 6.0, 150.0)
    assert d5.end_reasons == {"button": 1, "unavailable": 1}
    assert d5.funnel["pressed"] == 2 and d5.funnel["lead_saved"] == 1 and d5.funnel["greeted"] == 1
    assert (d6.visits, d6.offline_min, d6.budget_used, d6.conversion) == (0, 10.0, 0.04, None)
    t = report.total
    assert (t.visits, t.leads, t.cost_usd, t.cost_per_lead_usd, t.offline_min) == (2, 1, 8.0, 8.0, 10.0)
    assert t.budget_used == pytest.approx(8.0 / 150.0)
    assert t.top_topics == [("DSCR loans: documents", 1), ("Fix and flip: ARV", 1)]
    csv = render_csv(report).splitlines()
    assert csv[0].startswith("day,visits,median_duration_s,leads,conversion") and "end_unavailable" in csv[0]
    assert csv[-1].startswith("total,2,150,1,0.5,0,8.0,8,10.0,")
    assert "funnel:      pressed 2 > greeted 1" in render_text(report)


def test_the_default_kiosk_id_is_stable_and_hides_the_machine_id(tmp_path: Path) -> None:
    mid = tmp_path / "machine-id"
    mid.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    first = machine_kiosk_id(mid)
    assert first == machine_kiosk_id(mid) and re.fullmatch(r"kiosk-[0-9a-f]{12}", first)
    assert "3d1219c7" not in first
    mid.write_text("0123456789abcdef0123456789abcdef\n")
    assert machine_kiosk_id(mid) != first
    assert re.fullmatch(r"kiosk-[0-9a-f]{12}", machine_kiosk_id(tmp_path / "missing"))


# -- Prometheus --------------------------------------------------------------------------------

SNAPSHOT = prom.Snapshot(
    kiosk_id='booth "7"\\east',  # escaping is exercised
    up=True,
    state="listening",
    uptime_s=3600.5,
    visits_by_reason={"button": 5, "offline": 1, "unavailable": 2},
    leads=3,
    outbox={("lead", "pending"): 2, ("heartbeat", "pending"): 1, ("email_officer", "dead"): 1},
    last_success_at="2026-01-05T10:00:00+00:00",
    connect_failures=4,
    link_up=False,
    first_audio_ms=(80.0, 420.0, 1500.0),
    cost_usd=12.345,
    cost_today_usd=1.5,
    daily_budget_usd=50.0,
    underruns=7,
    capture_overflows=1,
    watchdog_pings=1200,
)


def promtool() -> str:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: scripts/bootstrap installs Debian's prometheus package"
    return tool


def test_promtool_accepts_the_metrics_file_written_atomically(tmp_path: Path) -> None:
    path = prom.write_textfile(tmp_path, prom.render(prom.kiosk_families(SNAPSHOT)))
    assert path == tmp_path / "kiosk.prom" and sorted(p.name for p in tmp_path.iterdir()) == ["kiosk.prom"]
    assert path.stat().st_mode & 0o777 == 0o644
    text = path.read_text()
    check = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60,
                           check=False)  # fmt: skip
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stdout + check.stderr
    assert 'kiosk_info{kiosk_id="booth \\"7\\"\\\\east",version="' in text
    assert 'kiosk_visits_total{reason="unavailable"} 2' in text
    assert 'kiosk_state{state="listening"} 1' in text and 'kiosk_state{state="idle"} 0' in text
    assert 'kiosk_outbox_rows{kind="lead",state="pending"} 2' in text
    assert 'kiosk_first_audio_seconds_bucket{le="0.5"} 2' in text and "kiosk_first_audio_seconds_count 3" in text
    assert "kiosk_last_sync_success_timestamp_seconds 1767607200" in text
    # A broken file is what promtool is there to catch (so the check above means something).
    bad = subprocess.run([promtool(), "check", "metrics"], input="kiosk_visits 1\nkiosk_visits 2\n",
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert bad.returncode != 0


def test_the_grafana_dashboard_charts_only_metrics_the_kiosk_writes() -> None:
    dash = json.loads((REPO / "hardware" / "grafana" / "kiosk-fleet.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bkiosk_[a-z_]+", e)}
    written = prom.metric_names(prom.kiosk_families(SNAPSHOT))
    assert used and used <= written, used - written
    charted = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    assert {f.name for f in prom.kiosk_families(SNAPSHOT)} - charted == set()  # and every family is charted


def test_the_documents_carry_exactly_what_their_schemas_require() -> None:
    from kiosk.fleet import documents
    from kiosk.fleet.report import day_stats

    stats = day_stats("2026-01-05", [end(tracker())], 1, 2.0, 60.0, 50.0)
    daily = documents.daily_document("k1", stats, {"offline": 60.0}, 50.0, "2026-01-06T00:05:00+00:00")
    beat = documents.heartbeat_document(
        "k1", "2026-01-06T00:05:00+00:00", state="idle", uptime_s=10, outbox={("lead", "pending"): 1},
        last_sync_at=None, last_error=None, last_error_at=None, link_up=True, link_failures=0,
        today={"visits": 0, "leads": 0, "cost_usd": 0.0}, budget_left_usd=50.0,
    )  # fmt: skip
    for doc, kind in ((daily, "daily_stats"), (beat, "heartbeat")):
        contract = documents.schema(kind)
        assert sorted(doc) == sorted(contract["required"]) == sorted(contract["properties"])
        assert doc["schema"] == contract["properties"]["schema"]["const"]
    assert beat["health"] == "ok" and daily["funnel"]["pressed"] == 1 and daily["leads"] == 1
