"""Storage faults: a full disk, a zero-length or damaged database, numbers SQLite cannot hold.

A full disk is made two ways: SQLite's ``max_page_count`` (runs anywhere; SQLite answers
SQLITE_FULL exactly as on a full disk) and, when the tests run as root, a real 1 MiB tmpfs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from kiosk.cli.probes import check_database
from kiosk.errors import StoreError, StoreFull
from kiosk.leads.sqlfaults import INT_MAX
from kiosk.leads.store import Store
from tests.synckit import CONSENT, lead, save_leads
from tests.toolkit import DRAFT, call, make_ctx, make_registry

REPO = Path(__file__).resolve().parent.parent
TABLES = ("leads", "consent", "scores", "outbox")


def counts(store: Store) -> dict[str, int]:
    return {t: store.count(t) for t in TABLES}


def fill_up(store: Store) -> None:
    """No page may be added, and the pages there are hold no room for another lead."""
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count={pages}")
    tiny = replace(lead(0), name="A B", email="a@b.co", phone="+1", analysis=None)
    with contextlib.suppress(StoreFull):
        for _ in range(10_000):
            store.save_lead(replace(tiny, id=str(uuid.uuid4())), replace(CONSENT, visitor_words="y"))


def room_again(store: Store) -> None:
    store.conn.execute("PRAGMA max_page_count=1073741823")


def test_disk_full_is_reported_as_itself_nothing_half_written_and_saving_resumes(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    save_leads(store, 2)
    fill_up(store)
    before = counts(store)
    with pytest.raises(StoreFull, match="disk is full") as err:
        for i in range(200):  # the first one that needs a new page
            store.save_lead(lead(100 + i), CONSENT)
    assert "rollback" not in str(err.value).lower()  # SQLite's error, not our clean-up's
    after = counts(store)
    assert after["leads"] == after["consent"] == after["outbox"]  # each lead whole or not at all
    assert after["leads"] >= before["leads"]
    room_again(store)
    lead_id = store.save_lead(lead(999), CONSENT)
    assert store.lead(lead_id) is not None and store.consent(lead_id) is not None


def test_a_full_disk_tells_the_model_to_try_again_in_one_line_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "k.db")
    fill_up(store)
    registry, ctx = make_registry(), make_ctx(store)
    with caplog.at_level(logging.INFO):
        out = call(registry, "saveLead", {"leadDraft": DRAFT}, ctx)
    assert out["error"] == "could not save just now" and out["fix"] == "try again in a moment", out
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None and "disk is full" in errors[0].getMessage()
    assert DRAFT["email"] not in caplog.text and DRAFT["name"] not in caplog.text
    room_again(store)
    assert "leadId" in call(registry, "saveLead", {"leadDraft": DRAFT}, ctx)  # the model's retry works


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real, tiny filesystem (root only; skipped elsewhere)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk needs root to mount a tmpfs; the max_page_count tests cover the rest")
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                       check=False)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_really_full_disk_loses_nothing_and_saving_resumes_when_space_returns(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        store = Store(disk / "k.db")
        ballast = disk / "ballast"
        with contextlib.suppress(OSError), ballast.open("wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        saved: list[str] = []
        with pytest.raises(StoreError) as err:
            for i in range(2000):
                saved.append(store.save_lead(lead(i), CONSENT))
        assert "rollback" not in str(err.value).lower()
        assert isinstance(err.value, StoreFull) or "disk" in str(err.value)
        ballast.unlink()  # space returns
        lead_id = store.save_lead(lead(5000), CONSENT)
        assert {*saved, lead_id} <= {r[0] for r in store.conn.execute("SELECT id FROM leads")}
        c = counts(store)
        assert c["leads"] == c["consent"] == c["outbox"] == len(saved) + 1
        store.close()


def test_a_zero_length_database_is_refused_never_replaced(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    db.touch()
    with pytest.raises(StoreError, match=r"empty.*move the file aside"):
        Store(db)
    assert db.stat().st_size == 0  # left as found, for whoever investigates
    result = check_database(db)
    assert result.status != "PASS" and "move the file aside" in result.detail


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    db.write_bytes(b"PK\x03\x04 this is a zip, not the kiosk's leads" * 100)
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store(db)


def damaged(tmp_path: Path) -> Path:
    db = tmp_path / "k.db"
    store = Store(db)
    save_leads(store, 200)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    data[3 * page : 6 * page] = os.urandom(3 * page)  # garbage in the middle, the header intact
    db.write_bytes(bytes(data))
    return db


def test_a_damaged_database_stops_sync_with_a_clear_line_and_the_self_test_says_how_to_recover(
    tmp_path: Path,
) -> None:
    db = damaged(tmp_path)
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(f'kiosk_id = "k1"\n[store]\npath = "{db}"\n[sync]\nendpoint = "https://127.0.0.1:9/leads"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    env.update(KIOSK_SECRETS__SYNC_TOKEN="t", KIOSK_SECRETS__SYNC_SIGNING_SECRET="s")
    r = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(cfg), "sync", "--once"], env=env,
                       capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert r.returncode == os.EX_UNAVAILABLE, r.stderr
    assert "Traceback" not in r.stderr and "move the file aside" in r.stderr, r.stderr
    result = check_database(db)
    assert result.status != "PASS" and "move the file aside" in result.detail, result.detail


def test_counts_too_big_for_sqlite_are_clamped_not_fatal(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    visit = str(uuid.uuid4())
    store.record_usage(visit, "2025-01-01", {"input_tokens": 10**30, "output_tokens": -5}, float("nan"))
    row = store.conn.execute("SELECT input_tokens, output_tokens, cost_usd FROM usage WHERE session_id = ?",
                             (visit,)).fetchone()  # fmt: skip
    assert tuple(row) == (INT_MAX, 0, 0.0)
    with pytest.raises(OverflowError):  # the clamp is ours: SQLite itself refuses such a number
        store.conn.execute("SELECT ?", (10**30,))
