"""The benchmark script keeps working (it is not a timed test: no budget is checked here)."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from pathlib import Path

from kiosk.bench import threads
from kiosk.bench.cli import METRICS

REPO = Path(__file__).resolve().parent.parent


def test_quick_bench_reports_every_metric(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [str(REPO / "scripts" / "bench"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["metrics"]) == set(METRICS)
    assert all(isinstance(v, int | float) and math.isfinite(v) for v in report["metrics"].values()), report["metrics"]
    assert report["quick"] is True
    assert report["machine"]["nproc"] >= 1
    for key in METRICS:
        assert key in done.stdout  # the table lists it


def test_thread_cpu_names_the_thread_that_spent_it() -> None:
    def burn() -> None:
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.3:
            pass

    before = threads.thread_cpu()
    worker = threading.Thread(target=burn, name="burner")
    worker.start()
    burned = watched = 0.0
    while worker.is_alive():  # read while it is alive: an ended thread leaves /proc
        spent = threads.difference(threads.thread_cpu(), before)
        # (the read that races the thread's exit may miss it: keep the most seen)
        burned, watched = max(burned, spent.get("burner", 0.0)), spent.get("loop", 0.0)
        worker.join(0.05)
    assert burned >= 0.1, "the burner's CPU is named after it"
    assert watched < burned, "the main thread only watched"
