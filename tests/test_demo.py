"""The offline demo end to end: the real kiosk against the simulator."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from kiosk import conversation as cv
from kiosk.sim.demo import run_demo
from tests.toolkit import CHECKOUT_CONFIG


async def test_happy_path_demo_saves_a_lead(tmp_path: Path) -> None:
    out = io.StringIO()
    trace = tmp_path / "trace.jsonl"
    result = await run_demo("happy_path", tmp_path, speed=10.0, out=out, trace=trace, config=CHECKOUT_CONFIG)
    text = out.getvalue()
    assert result.ok, text
    assert "Visitor  : Yes, I agree." in text
    db = sqlite3.connect(result.store_path)
    (name, phone, analysis) = db.execute("SELECT name, phone, analysis_json FROM leads").fetchone()
    assert (name, phone) == ("Jane Doe", "+14155550132")
    assert json.loads(analysis)["monthlyPITIA"] > 0
    (words,) = db.execute("SELECT visitor_words FROM consent").fetchone()
    assert "Yes, I agree." in words
    assert result.speaker_wav.stat().st_size > 100_000
    assert result.rig.rec.ended == [cv.EndReason.BUTTON]
    shown = result.rig.lights.shown
    assert {cv.Pattern.CONNECTING, cv.Pattern.LISTENING, cv.Pattern.ASSISTANT_SPEAKING} <= set(shown)
    assert shown[-1] is cv.Pattern.IDLE
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    errors = [e for e in events if e["event"].get("type") == "error"]
    assert errors == []
    appends = [e for e in events if e["event"].get("type") == "input_audio_buffer.append"]
    assert appends and appends[0]["event"]["audio"].startswith("<")  # audio elided in traces


def test_demo_cli_exit_status(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(CHECKOUT_CONFIG), "demo", "--speed", "10",
                        "--workdir", str(tmp_path), "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
