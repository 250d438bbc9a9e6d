"""``kiosk demo``: one whole visitor session, offline, with the real kiosk code.

It starts the Realtime simulator on loopback, builds the kiosk with file-backed audio
(a scripted visitor speaking WAV fixtures; the assistant's audio written to a WAV),
presses the button, lets the visitor talk turn by turn, ends the session and checks the
scenario's expectations (a lead saved with consent evidence, ...). The exit status says
whether they held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kiosk import conversation as cv
from kiosk.audio.pcm import read_wav
from kiosk.rig import Rig
from kiosk.sim.scenario import load_scenario
from kiosk.sim.server import SimServer
from kiosk.store import Store


@dataclass
class DemoResult:
    """What happened, and whether the scenario's expectations held."""

    checks: list[tuple[str, bool]]
    store_path: Path
    speaker_wav: Path
    trace_path: Path | None
    sim: SimServer

    @property
    def ok(self) -> bool:
        """All checks passed."""
        return all(ok for _, ok in self.checks)


async def _visit(rig: Rig) -> None:
    """The scripted visitor: press, listen, speak each turn, press to finish."""
    await rig.press(until={cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING})
    await rig.assistant_turn()
    for turn in rig.scenario.turns:
        await rig.pause(turn.pause_ms)
        if turn.visitor_audio is None:
            raise ValueError(f"scenario {rig.scenario.name}: turn {turn.visitor!r} has no visitor_audio")
        await rig.say(read_wav(turn.visitor_audio))
        await rig.assistant_turn()
    await rig.press(until={cv.State.IDLE}, limit_s=10)


async def run_demo(
    scenario_name: str,
    workdir: Path,
    *,
    speed: float = 4.0,
    out: TextIO = sys.stdout,
    config: Path | None = None,
    trace: Path | None = None,
    record: bool = False,
) -> DemoResult:
    """Run one scenario end to end; returns the checks (``record`` keeps every server event)."""
    scenario = load_scenario(scenario_name)
    rig = Rig(scenario, workdir, speed=speed, out=out, config=config, trace=trace, record=record)
    print(f"Scenario {scenario.name}: {scenario.description}", file=out, flush=True)
    error: BaseException | None = None
    async with rig.running():
        try:
            await _visit(rig)
        except (TimeoutError, ValueError) as exc:
            error = exc
    checks = _checks(rig, error)
    rig.store.close()
    _summary(out, checks, rig.store_path, rig.speaker_wav)
    return DemoResult(checks, rig.store_path, rig.speaker_wav, trace, rig.sim)


def _checks(rig: Rig, error: BaseException | None) -> list[tuple[str, bool]]:
    store: Store = rig.store
    lines = rig.rec.lines
    checks: list[tuple[str, bool]] = [
        ("visitor got through every scripted turn" + (f" ({error!r})" if error else ""), error is None),
        ("assistant greeted first", bool(lines) and lines[0][0] == "assistant"),
    ]
    expect = rig.scenario.expect
    leads = store.count("leads")
    if "lead_saved" in expect:
        want = bool(expect["lead_saved"])
        checks.append((f"lead saved: {leads > 0} (expected {want})", (leads > 0) == want))
        if want:
            consent = store.count("consent")
            outbox = store.count("outbox", "kind = 'lead'")
            checks.append(
                (
                    f"consent evidence and outbox row stored with the lead ({consent}/{outbox})",
                    consent == leads and outbox == leads,
                )
            )
    rejected = [e for s in rig.sim.sessions for e in s.received if "raw" in e]
    checks.append((f"every client event accepted by the simulator ({len(rejected)} rejected)", not rejected))
    if "end_reason" in expect:
        got = rig.rec.ended[-1].value if rig.rec.ended else None
        checks.append((f"session ended by {got} (expected {expect['end_reason']})", got == expect["end_reason"]))
    return checks


def _summary(out: TextIO, checks: list[tuple[str, bool]], store_path: Path, speaker_wav: Path) -> None:
    print("\nChecks:", file=out)
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}", file=out)
    print(f"\nDatabase: {store_path}\nAssistant audio: {speaker_wav}", file=out, flush=True)


def main(
    scenario: str, speed: float, workdir: Path | None, config: Path | None, trace: Path | None, as_json: bool
) -> int:
    """CLI entry: run the demo, print, return the exit status."""
    ctx = tempfile.TemporaryDirectory(prefix="kiosk-demo-") if workdir is None else contextlib.nullcontext(str(workdir))
    with ctx as d:
        result = asyncio.run(run_demo(scenario, Path(d), speed=speed, config=config, trace=trace))
        if as_json:
            print(json.dumps({"ok": result.ok, "checks": [{"check": n, "ok": o} for n, o in result.checks]}))
    return 0 if result.ok else 1
