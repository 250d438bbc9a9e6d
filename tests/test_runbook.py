"""The docs stay true: the journald runbook lists exactly the KIOSK_EVENT values the code
emits, its journalctl recipes find what they promise in a real journal file made from a
demo's log, and the wiring diagram's GPIO numbers are config/kiosk.toml's defaults."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from kiosk.config import PanelSettings
from kiosk.logs import JournalExportHandler, RedactingFilter, fields_of
from kiosk.sim.demo import run_demo
from tests.toolkit import CHECKOUT_CONFIG

REPO = Path(__file__).resolve().parent.parent

# event("name", ...), extra={"kiosk": {"event": "name"...}} and fields = {"event": "name"...}
_EMITTED = re.compile(r'(?:\bevent\(\s*"([a-z_]+)"|"event":\s*"([a-z_]+)")')


def emitted_events() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "kiosk").rglob("*.py"):
        if path.name == "logs.py":  # its docstring's examples are not emissions
            continue
        for a, b in _EMITTED.findall(path.read_text()):
            found.add(a or b)
    return found


def runbook_events() -> set[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Runbook: journald") :]
    section = section[: section.index("\n### ", 5)]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return names


def test_runbook_lists_exactly_the_emitted_events() -> None:
    code, docs = emitted_events(), runbook_events()
    assert code - docs == set(), f"add these KIOSK_EVENT values to the README runbook table: {sorted(code - docs)}"
    assert docs - code == set(), f"the runbook lists events nothing emits: {sorted(docs - code)}"


def test_wiring_matches_the_default_pins() -> None:
    wiring = (REPO / "hardware" / "wiring.md").read_text()
    toml = tomllib.loads((REPO / "config" / "kiosk.toml").read_text())["panel"]
    defaults = PanelSettings()
    assert toml["button_pin"] == defaults.button_pin
    assert toml["lamp_pin"] == defaults.lamp_pin
    assert tuple(toml["status_rgb_pins"]) == defaults.status_rgb_pins

    def row(function: str) -> int:
        m = re.search(rf"^\| {re.escape(function)} \| GPIO(\d+) \|", wiring, re.M)
        assert m, function
        return int(m.group(1))

    assert row("Button input") == defaults.button_pin
    assert row("Button lamp (PWM)") == defaults.lamp_pin
    assert (row("Status LED red"), row("Status LED green"), row("Status LED blue")) == defaults.status_rgb_pins


# -- the recipes, run with journalctl against a demo's journal --------------------------------

JOURNAL_REMOTE = Path("/lib/systemd/systemd-journal-remote")
# Events of the kiosk as a whole, not of a visit, though they may happen during one.
KIOSK_WIDE = {"standby_ready", "standby_wait", "standby_replaced", "kb_built", "sync_sent", "sync_retry",
              "budget_daily", "budget_restored", "link_down", "link_restored", "echo_path"}  # fmt: skip


def recipe(text: str, needle: str) -> list[str]:
    """The runbook's journalctl command line containing ``needle`` (without its comment and pipe)."""
    section = text[text.index("### Runbook: journald") :]
    for line in section.splitlines():
        if line.startswith("journalctl") and needle in line:
            return line.split("#", 1)[0].split("|", 1)[0].split()
    raise AssertionError(f"no runbook recipe with {needle}")


def run_recipe(cmd: list[str], journal: Path, **subst: str) -> list[dict[str, str]]:
    """Run a recipe on ``journal`` (``-o json`` last, so it wins), placeholders filled in."""
    args = [a.replace("<id>", subst.get("id", "<id>")) for a in cmd[1:]]
    out = subprocess.run(["journalctl", f"--file={journal}", *args, "-o", "json"],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def visit_lines(records: list[logging.LogRecord], visit_no: int) -> list[str]:
    """What an operator means by every line of a visit: from its press to the next press (or
    the end), the kiosk's own lines (not the simulator's), except events of the kiosk as a
    whole and the state changes after its end (the kiosk settling: offline -> idle)."""
    ours = [r for r in records if r.name.startswith("kiosk.") and not r.name.startswith("kiosk.sim")]
    presses = [i for i, r in enumerate(ours) if fields_of(r).get("state") == "connecting"
               and fields_of(r).get("session_no") == visit_no]  # fmt: skip
    assert presses, f"visit {visit_no} never started"
    start = presses[0]
    nxt = [i for i, r in enumerate(ours) if i > start and fields_of(r).get("state") == "connecting"
           and fields_of(r).get("session_no") != visit_no]  # fmt: skip
    window = ours[start : nxt[0] if nxt else len(ours)]
    lines, ended = [], False
    for r in window:
        f = fields_of(r)
        if f.get("event") in KIOSK_WIDE or (ended and f.get("event") == "state"):
            continue
        ended = ended or f.get("event") == "session_end"
        lines.append(r.getMessage())
    return lines


@pytest.mark.skipif(not JOURNAL_REMOTE.exists(), reason="systemd-journal-remote missing (scripts/bootstrap)")
async def test_the_recipes_return_every_line_of_a_visit(tmp_path: Path) -> None:
    export = tmp_path / "demo.export"
    runs: dict[str, list[logging.LogRecord]] = {"happy_path": [], "network_down": []}
    current: list[list[logging.LogRecord]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            current[-1].append(record)

    root = logging.getLogger()
    with export.open("wb") as stream:
        handlers = [JournalExportHandler(stream, boot_id="0123456789abcdef0123456789abcdef"), Keep()]
        for h in handlers:
            h.addFilter(RedactingFilter())  # as the daemon's journal handler
            root.addHandler(h)
        level = root.level
        root.setLevel(logging.INFO)  # (setLevel, not assignment: loggers cache their verdicts)
        try:
            for name, records in runs.items():  # a lead saved; an offline visit, then a greeting
                current.append(records)
                result = await run_demo(name, tmp_path / name, speed=10.0, out=io.StringIO(), config=CHECKOUT_CONFIG)
                assert result.ok
        finally:
            root.setLevel(level)
            for h in handlers:
                root.removeHandler(h)
    journal = tmp_path / "demo.journal"
    await asyncio.to_thread(subprocess.run, [str(JOURNAL_REMOTE), f"--output={journal}", str(export)],
                            capture_output=True, timeout=60, check=True)  # fmt: skip
    text = (REPO / "README.md").read_text()
    one_visit = recipe(text, "KIOSK_SESSION=<id>")
    seen = 0
    for run, records in runs.items():
        for start in [r for r in records if fields_of(r).get("event") == "session_start"]:
            seen += 1
            visit = fields_of(start)
            got = run_recipe(one_visit, journal, id=str(visit["session"]))
            assert [e["MESSAGE"] for e in got] == visit_lines(records, int(visit["session_no"])), run
            events = [e.get("KIOSK_EVENT") for e in got]
            if run == "happy_path":
                assert {"tool", "lead_saved", "first_audio", "session_end"} <= set(events)
            elif visit["session_no"] == 1:  # found offline: the message played is part of it
                assert events == ["state", "session_start", "connect_failed", "state", "session_end", "offline"]
    assert seen == 3
    ended = run_recipe(recipe(text, "KIOSK_EVENT=session_end --since today"), journal)
    assert len(ended) == 3 and all(e["SYSLOG_IDENTIFIER"] == "kiosk" for e in ended)
