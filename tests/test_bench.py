"""The benchmark script keeps working (it is not a timed test: no budget is checked here)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

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
