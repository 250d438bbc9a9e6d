"""Lead sync throughput: a backlog drained by the real ``Syncer`` into the reference receiver.

The receiver (``scripts/lead-receiver``, whose path the caller gives: it is a checkout
script, not part of the package) runs as its own process on loopback (plain HTTP:
TLS cost belongs to the network, not to the kiosk), storing every lead in its SQLite
file as it would in production. The backlog is saved through the real save path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from kiosk.config import NotifySettings, RetentionSettings, Secrets, SyncSettings
from kiosk.leads.records import ConsentEvidence, LeadRecord
from kiosk.leads.store import Store
from kiosk.leads.sync import Syncer

TOKEN, SECRET = "bench-token", "bench-signing-secret"
CONSENT = ConsentEvidence(
    disclosure_text="Example Lending may call or e-mail you about your loan.",
    disclosure_version="v1",
    channel="kiosk_voice",
    visitor_words="Yes, that's fine.",
)


def backlog(store: Store, n: int) -> None:
    """``n`` leads through the real save path (fsync off while filling: the fill is not what is measured)."""
    store.conn.execute("PRAGMA synchronous=OFF")
    try:
        for i in range(n):
            lead = LeadRecord(
                name=f"Visitor {i}",
                email=f"visitor{i}@example.com",
                phone=f"+1415555{i % 10000:04d}",
                product_type="dscr",
                session_id=f"s{i}",
                kiosk_id="bench",
                analysis={"dscr": 1.25, "monthly_rent": 2400},
            )
            store.save_lead(lead, CONSENT)
    finally:
        store.conn.execute("PRAGMA synchronous=FULL")


def run(workdir: Path, n: int, receiver: Path) -> dict[str, Any]:
    """Drain ``n`` pending leads into the ``receiver`` script; leads per second and the drain time."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LEAD_RECEIVER_TOKEN": TOKEN, "LEAD_RECEIVER_SECRET": SECRET}
    cmd = [sys.executable, str(receiver), "--db", str(workdir / "received.db"), "--port", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "lead-receiver: listening on http://127.0.0.1:PORT/"
        if "listening on " not in line:
            raise RuntimeError(f"lead-receiver did not start: {line!r}")
        url = line.rsplit("listening on ", 1)[1].strip() + "leads"
        store = Store(workdir / "kiosk.db")
        backlog(store, n)
        syncer = Syncer(
            store,
            "bench",
            SyncSettings(endpoint=url, timeout_s=30.0),
            NotifySettings(),
            RetentionSettings(),
            Secrets(sync_token=SecretStr(TOKEN), sync_signing_secret=SecretStr(SECRET)),
        )
        t0 = time.perf_counter()
        report = syncer.drain()
        seconds = time.perf_counter() - t0
        syncer.close()
        if report.sent != n:
            raise RuntimeError(f"sync sent {report.sent} of {n} leads: {report.errors[:3]}")
        return {"leads": n, "drain_s": round(seconds, 2), "leads_per_s": round(n / seconds, 1)}
    finally:
        proc.terminate()
        proc.wait(10)
