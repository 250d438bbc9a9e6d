"""``kiosk status``: the daemon's status file plus outbox counts from the database."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from kiosk.cli.main import main
from kiosk.fleet.records import save_visit
from kiosk.fleet.visits import VisitRecord
from kiosk.leads import outbox as ob
from kiosk.leads.store import Store
from kiosk.logs import event
from kiosk.runtime.systemd import StatusFile, StatusLogHandler
from tests.synckit import CONSENT, lead

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "kiosk.toml"


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    db, status = tmp_path / "state" / "kiosk.db", tmp_path / "state" / "status.json"
    monkeypatch.setenv("KIOSK_STORE__PATH", str(db))
    monkeypatch.setenv("KIOSK_SERVICE__STATUS_FILE", str(status))
    return db, status


def seed_outbox(db: Path) -> None:
    store = Store(db)
    for ref in ("a", "b", "c", "d"):
        store.enqueue("lead", ref)
    store.conn.execute("UPDATE outbox SET state = 'sent', sent_at = '2025-05-01T10:00:00+00:00' WHERE ref = 'a'")
    store.conn.execute("UPDATE outbox SET state = 'dead' WHERE ref = 'b'")
    store.enqueue("email_visitor", "c", {"to": "x@example.com", "subject": "s", "body": "b"})  # not a lead
    ob.set_state(store, last_success_at="2025-05-01T10:00:00+00:00")  # as the syncer records a delivery
    today, yesterday = date.today(), date.today() - timedelta(days=1)
    for n, day in enumerate([today, today, yesterday]):  # two visits today, one of them with a lead
        save_visit(store, VisitRecord(f"v{n}", day.isoformat(), "2025-05-01T10:00:00+00:00",
                                      "2025-05-01T10:01:00+00:00", 60.0, "button", ("pressed",)))  # fmt: skip
    lead_id = store.save_lead(lead(0), CONSENT)
    store.conn.execute("UPDATE leads SET session_id = 'v1'")
    store.conn.execute("UPDATE outbox SET state = 'sent' WHERE ref = ?", (lead_id,))  # delivered long ago
    store.record_usage("v1", today.isoformat(), {"input_tokens": 10, "output_tokens": 10}, 12.5)
    store.close()


def daemon_ran(status: Path, **fields: object) -> None:
    """What the daemon leaves: started, a session, an error, in state listening (this process is 'it')."""
    sf = StatusFile(status)
    sf.started()
    handler = StatusLogHandler(sf)
    log = logging.getLogger("kiosk.test_status_cmd")
    log.addHandler(handler)
    log.setLevel(logging.INFO)  # the daemon logs at INFO (log.level); session events are INFO
    try:
        log.info("start", extra=event("session_start", session="s1"))
        log.info("end", extra=event("session_end", session="s1", reason="goodbye", duration_s=95.0))
        log.error("Realtime refused the API key", extra=event("realtime_fatal"))
    finally:
        log.removeHandler(handler)
    sf.update(state="listening", **fields)


def test_status_of_a_running_kiosk(paths: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, status = paths
    seed_outbox(db)
    daemon_ran(status)
    assert main(["--config", str(CONFIG), "status"]) == 0
    out = capsys.readouterr().out
    assert "state:         listening (pid " in out
    assert "uptime:        0h 00m" in out
    assert "(goodbye, 95 s)" in out
    assert "pending leads: 2 waiting for upload, 1 given up (dead)" in out
    assert "last sync:     2025-05-01T10:00:00+00:00" in out
    assert "Realtime refused the API key" in out
    assert "today:         2 visits, 1 leads, budget left $37.50" in out  # the daily budget is $50
    assert "realtime link: ok" in out
    assert "problem" not in out


def test_status_says_since_when_the_link_fails(paths: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, status = paths
    seed_outbox(db)
    daemon_ran(status, link_up=False, link_down_since="2025-05-01T09:00:00+00:00", link_failures=7)
    assert main(["--config", str(CONFIG), "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["link"] == "failing since 2025-05-01T09:00:00+00:00 (7 failed attempts)"
    assert (data["visits_today"], data["leads_today"], data["budget_left_usd"]) == (2, 1, 37.5)


def test_status_json(paths: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, status = paths
    seed_outbox(db)
    daemon_ran(status)
    assert main(["--config", str(CONFIG), "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["running"] is True and data["state"] == "listening"
    assert data["pending_leads"] == 2 and data["dead_leads"] == 1
    assert data["uptime_s"] >= 0


def test_status_without_a_daemon(paths: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = paths
    seed_outbox(db)
    assert main(["--config", str(CONFIG), "status"]) == 69
    out = capsys.readouterr().out
    assert "state:         not running" in out
    assert "problem:       no status file at" in out
    assert "pending leads: 2 waiting" in out  # the database still answers


def test_status_of_a_stopped_daemon(paths: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, status = paths
    seed_outbox(db)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True, timeout=60
    )
    StatusFile(status).started(pid=int(gone.stdout))  # that process has exited
    assert main(["--config", str(CONFIG), "status"]) == 69
    out = capsys.readouterr().out
    assert "the daemon is not running (last state starting)" in out


def test_status_without_a_database(paths: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, status = paths
    daemon_ran(status)
    assert main(["--config", str(CONFIG), "status"]) == 69
    out = capsys.readouterr().out
    assert "state:         listening" in out
    assert f"database {db} unavailable" in out
    assert "pending leads: ? waiting" in out
    assert not db.exists()  # status never creates the database
