"""The SQLite store: file mode, journal mode, migrations, atomic saves."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kiosk.errors import StoreError
from kiosk.leads.records import ConsentEvidence, LeadRecord
from kiosk.leads.store import MIGRATIONS, Store

LEAD = LeadRecord(name="Jane Doe", email="jane@example.com", phone="+14155550132", product_type="dscr",
                  session_id="s1", kiosk_id="k1", analysis={"dscr": 1.2})
CONSENT = ConsentEvidence(disclosure_text="disclosure", disclosure_version="abc", channel="kiosk_voice",
                          visitor_words="Yes, I agree.")


def test_new_database_is_private_wal_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "kiosk.db"
    store = Store(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.schema_version == len(MIGRATIONS)
    store.close()
    # Re-opening applies nothing twice.
    again = Store(path)
    assert again.schema_version == len(MIGRATIONS)
    again.close()


def test_save_lead_writes_lead_consent_and_outbox_together(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    lead_id = store.save_lead(LEAD, CONSENT)
    assert store.lead(lead_id)["email"] == "jane@example.com"  # type: ignore[index]
    assert store.consent(lead_id)["visitor_words"] == "Yes, I agree."  # type: ignore[index]
    assert store.count("outbox", "kind = 'lead' AND ref = ?", (lead_id,)) == 1


def test_failed_save_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    bad = ConsentEvidence(disclosure_text=None, disclosure_version="v", channel="c", visitor_words="w")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="database write failed"):
        store.save_lead(LEAD, bad)
    assert store.count("leads") == 0
    assert store.count("outbox") == 0


def test_transactions_from_several_threads_take_turns(tmp_path: Path) -> None:
    """Tools write from worker threads while the kiosk records usage: none may fail."""
    import threading

    store = Store(tmp_path / "k.db")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(50):
                store.record_usage(f"s{n}-{i}", "2026-11-24", {"input_tokens": 1, "output_tokens": 1}, 0.01)
        except BaseException as exc:  # collected: an exception in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert store.count("usage") == 200
    store.close()


def test_reads_from_one_thread_and_writes_from_another_never_collide(tmp_path: Path) -> None:
    """A tool thread reads a lead while the syncer's thread writes: neither may fail.

    (sqlite_utils' query() wrapped each read in a SAVEPOINT on the shared connection, and
    a read interleaved with another thread's transaction failed with "no such savepoint".)
    """
    import threading

    store = Store(tmp_path / "k.db")
    lead_id = store.save_lead(LEAD, CONSENT)
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(300):
                store.record_usage(f"s-{i}", "2026-11-24", {"input_tokens": 1, "output_tokens": 1}, 0.01)
        except BaseException as exc:  # collected: an exception in a thread would be lost
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                assert store.lead(lead_id) is not None
                assert store.consent(lead_id) is not None
                store.latest_score(lead_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert store.count("usage") == 300
    store.close()
