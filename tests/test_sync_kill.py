"""SIGKILL of a real `kiosk sync --once` process at random moments: nothing lost, nothing twice."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk.leads.store import Store
from tests.synckit import SECRET, TOKEN, make_cert, save_leads, serve_receiver

LEADS, BATCH, ROUNDS = 400, 4, 20


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    env.update(KIOSK_SECRETS__SYNC_TOKEN=TOKEN, KIOSK_SECRETS__SYNC_SIGNING_SECRET=SECRET)
    return env


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_stores_nothing_twice(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    store = Store(tmp_path / "k.db")
    ids = save_leads(store, LEADS)
    rng = random.Random(os.environ.get("KILL_SEED", "6"))
    with serve_receiver(tmp_path / "r.db", cert) as rx:
        cfg = tmp_path / "kiosk.toml"
        cfg.write_text(
            f'kiosk_id = "k1"\n[store]\npath = "k.db"\n'
            f'[sync]\nendpoint = "{rx.url}"\nca_bundle = "{cert[0]}"\nbatch_size = {BATCH}\ntimeout_s = 5.0\n'
        )
        cmd = [sys.executable, "-m", "kiosk", "--config", str(cfg), "sync", "--once"]
        killed = 0
        for _ in range(ROUNDS):
            proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            target = rx.receiver.requests + rng.randint(0, 3)
            deadline = time.monotonic() + 30
            while proc.poll() is None and not rx.receiver.wait_for_requests(target, 0.05):
                assert time.monotonic() < deadline, "sync process made no progress"
            # A random moment around that request: before it, while the receiver stores, or
            # after the answer but before the kiosk marks the rows sent.
            time.sleep(rng.uniform(0, 0.03))
            proc.kill()
            killed += proc.wait(timeout=30) == -9
        assert killed >= ROUNDS - 2  # the kills really landed mid-run
        final = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=60, check=False)
        assert final.returncode == 0, final.stderr
        stored = rx.receiver.stored()
        resent = rx.receiver.resent()
    assert sorted(stored) == sorted(ids)  # ids are the receiver's primary key: all there, none twice
    print(f"{killed} kills; {resent} lead(s) arrived again and were recognised as duplicates")
    assert dict(store.conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()) == {"sent": LEADS}
