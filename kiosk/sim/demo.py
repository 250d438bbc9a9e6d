"""``kiosk demo``: one whole visit, offline, with the real kiosk code.

It starts the Realtime simulator on loopback, builds the kiosk with file-backed audio
(a scripted visitor speaking WAV fixtures; the assistant's audio written to a WAV),
presses the button, lets the visitor talk turn by turn (or talk over the assistant, or
walk away, or find the kiosk offline or out of budget, as the scenario says) and checks the
scenario's expectations (a lead saved with consent evidence, why the session ended, the
lights shown, the local message played, ...). The exit status says whether they held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from kiosk import conversation as cv
from kiosk.audio.pcm import read_wav
from kiosk.errors import UsageError
from kiosk.leads.store import Store
from kiosk.sim.rig import TURN_TIMEOUT_S, Rig
from kiosk.sim.scenario import Scenario, load_scenario
from kiosk.sim.server import SimServer, SimSession
from kiosk.tools.scoring import verdict_words


@dataclass
class DemoResult:
    """What happened, and whether the scenario's expectations held."""

    checks: list[tuple[str, bool]]
    store_path: Path
    speaker_wav: Path
    trace_path: Path | None
    sim: SimServer
    rig: Rig  # stopped; its recorder, lights, speaker audio and kiosk counters stay readable

    @property
    def ok(self) -> bool:
        """All checks passed."""
        return all(ok for _, ok in self.checks)


GREETED = {cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING}
REFUSED = {cv.State.OFFLINE, cv.State.UNAVAILABLE, cv.State.ERROR}  # a local message plays instead
LEAVE_LIMIT_S = 60.0  # a visitor who walks away: idle time-out, check-in, silence, goodbye


async def _visit(rig: Rig) -> None:
    """The scripted visitor: press, listen, speak each turn, then leave as the scenario says."""
    scenario = rig.scenario
    rig.expect_audio()
    await rig.press(until=GREETED | REFUSED)
    if rig.kiosk.state in REFUSED:
        await rig.hear_local_message()
        if not scenario.network_returns:
            return  # the visitor heard the message and walks on
        rig.restore_network()
        # The kiosk notices by itself (the standby connects again); the visitor tries again.
        await rig.kiosk.wait_state({cv.State.IDLE}, limit_s=TURN_TIMEOUT_S)
        rig.expect_audio()
        await rig.press(until=GREETED)
    for turn in scenario.turns:
        if turn.visitor_audio is None:
            raise ValueError(f"scenario {scenario.name}: turn {turn.visitor!r} has no visitor_audio")
        if turn.barge_in_ms is None:
            await rig.assistant_turn()
            await rig.pause(turn.pause_ms)
            await rig.say(read_wav(turn.visitor_audio))
        else:
            # Talk over the assistant's reply: it must stop and forget what was not heard.
            await rig.talk_over(turn.barge_in_ms, read_wav(turn.visitor_audio))
        # The next reply starts after the visitor stopped; drop events of the one before.
        rig.expect_audio()
        rig.rec.assistant_lines.clear()
    await rig.assistant_turn()
    if scenario.leaves == "silence":
        await rig.kiosk.wait_state({cv.State.IDLE}, limit_s=LEAVE_LIMIT_S)
    else:
        await rig.press(until={cv.State.IDLE}, limit_s=10)


async def run_demo(
    scenario_name: str | Path | Scenario,
    workdir: Path,
    *,
    speed: float = 4.0,
    out: TextIO = sys.stdout,
    config: Path | None = None,
    trace: Path | None = None,
    record: bool = False,
) -> DemoResult:
    """Run one scenario end to end; returns the checks (``record`` keeps every server event)."""
    scenario = scenario_name if isinstance(scenario_name, Scenario) else load_scenario(scenario_name)
    rig = Rig(scenario, workdir, speed=speed, out=out, config=config, trace=trace, record=record)
    print(f"Scenario {scenario.name}: {scenario.description}", file=out, flush=True)
    error: BaseException | None = None
    async with rig.running():
        try:
            await _visit(rig)
        except (TimeoutError, ValueError) as exc:
            error = exc
        final_state = rig.kiosk.state  # before shutting down, which always ends idle
    checks = _checks(rig, error, final_state)
    rig.store.close()
    _summary(out, checks, rig.store_path, rig.speaker_wav)
    return DemoResult(checks, rig.store_path, rig.speaker_wav, trace, rig.sim, rig)


def _checks(rig: Rig, error: BaseException | None, final_state: cv.State) -> list[tuple[str, bool]]:
    expect = rig.scenario.expect
    checks: list[tuple[str, bool]] = [
        ("visitor got through every scripted step" + (f" ({error!r})" if error else ""), error is None),
    ]
    lines = rig.rec.lines
    greeted = bool(lines) and lines[0][0] == "assistant"
    want_greeting = bool(expect.get("greeted", True))
    checks.append((f"assistant greeted first: {greeted} (expected {want_greeting})", greeted == want_greeting))
    checks += _lead_checks(rig.store, expect, [r.id for r in rig.kiosk.visits.saved])
    rejected = [e for s in rig.sim.sessions for e in s.received if "raw" in e]
    checks.append((f"every client event accepted by the simulator ({len(rejected)} rejected)", not rejected))
    checks += _session_checks(rig, expect)
    if "final_state" in expect:
        want_state = expect["final_state"]
        checks.append((f"kiosk ends {final_state.value} (expected {want_state})", final_state.value == want_state))
    checks += _audio_checks(rig, expect)
    checks.append(_reg_b_check(rig))
    return checks


def _reg_b_check(rig: Rig) -> tuple[str, bool]:
    """Every scenario: the assistant spoke no verdict, and no tool handed the model a score or reason code."""
    said = [w for role, text in rig.rec.lines if role == "assistant" for w in verdict_words(text)]
    leaked = [name for name, _, output in rig.rec.tools if _has_score(output)]
    return (f"no verdict words said ({said}) and no score handed to the model ({leaked})", not said and not leaked)


def _has_score(output: str) -> bool:
    try:
        data = json.loads(output)
    except ValueError:
        return False
    text = json.dumps(data)
    return any(f'"{key}"' in text for key in ("score", "disposition", "reasons", "factors")) or bool(
        verdict_words(text)
    )


def _lead_checks(store: Store, expect: dict[str, Any], visits: list[str]) -> list[tuple[str, bool]]:
    """Leads of this run's visits (a --workdir may hold earlier runs' leads)."""
    checks: list[tuple[str, bool]] = []
    ids = [lead for v in visits for lead in store.session_lead_ids(v)]
    leads = len(ids)
    if "lead_saved" in expect:
        want = bool(expect["lead_saved"])
        checks.append((f"lead saved: {leads > 0} (expected {want})", (leads > 0) == want))
        if want:
            marks = ",".join("?" * leads)
            consent = store.count("consent", f"lead_id IN ({marks})", tuple(ids))
            # A lead erased at the visitor's request is never uploaded: its revocation goes instead.
            outbox = store.count("outbox", f"kind IN ('lead', 'consent_revocation') AND ref IN ({marks})", tuple(ids))
            outbox -= store.count("outbox", f"kind = 'consent_revocation' AND ref IN ({marks}) AND ref IN "
                                  f"(SELECT ref FROM outbox WHERE kind = 'lead')", tuple(ids))
            checks.append(
                (
                    f"consent evidence and outbox row stored with the lead ({consent}/{outbox})",
                    consent == leads and outbox == leads,
                )
            )
    if "consent_status" in expect:
        want_status = expect["consent_status"]
        got = [(store.consent(i) or {}).get("status") for i in ids]
        checks.append((f"consent status {got} (expected {want_status})", bool(got) and set(got) == {want_status}))
    return checks


def _session_checks(rig: Rig, expect: dict[str, Any]) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = []
    ended = [r.value for r in rig.rec.ended]
    if "end_reason" in expect:
        got = ended[-1] if ended else None
        checks.append((f"visit ended by {got} (expected {expect['end_reason']})", got == expect["end_reason"]))
    if "end_reasons" in expect:
        want = list(expect["end_reasons"])
        checks.append((f"visits ended by {ended} (expected {want})", ended == want))
    if "tool_calls" in expect:
        ran = Counter(name for name, _, _ in rig.rec.tools)
        for name, n in dict(expect["tool_calls"]).items():
            checks.append((f"{name} ran {ran[name]} time(s) (expected {n})", ran[name] == int(n)))
    if "visitor_sessions" in expect:
        n, want_n = rig.kiosk.visits_started, int(expect["visitor_sessions"])
        checks.append((f"visits started: {n} (expected {want_n})", n == want_n))
    if "lights" in expect:
        shown = {p.value for p in rig.lights.shown}
        missing = [p for p in expect["lights"] if p not in shown]
        checks.append((f"lights shown include {list(expect['lights'])} (missing {missing})", not missing))
    return checks


def _audio_checks(rig: Rig, expect: dict[str, Any]) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = []
    heard = rig.speaker.audio
    messages = {"offline": rig.offline_audio, "unavailable": rig.unavailable_audio}
    for name in expect.get("played", []):
        audio = messages.get(name)
        played = bool(audio) and audio is not None and audio in heard
        checks.append((f"the {name} message was played", played))
    if "assistant_said" in expect:
        said = {text for role, text in rig.rec.lines if role == "assistant"}
        for name in expect["assistant_said"]:
            reply = getattr(rig.scenario, name, None)
            ok = reply is not None and reply.say in said
            checks.append((f"assistant said the scenario's {name} line", ok))
    if "truncated" in expect:
        want = bool(expect["truncated"])
        got = any(_accepted_truncate(s) for s in rig.sim.sessions)
        checks.append((f"barge-in truncated the reply: {got} (expected {want})", got == want))
    return checks


def _accepted_truncate(sim: SimSession) -> bool:
    """The simulator cut an assistant item short: the visitor did not hear all of it."""
    return any(kept < had for had, kept in sim.truncated.values())


def _summary(out: TextIO, checks: list[tuple[str, bool]], store_path: Path, speaker_wav: Path) -> None:
    print("\nChecks:", file=out)
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}", file=out)
    print(f"\nDatabase: {store_path}\nAssistant audio: {speaker_wav}", file=out, flush=True)


def main(
    scenario: str, speed: float, workdir: Path | None, config: Path | None, trace: Path | None, as_json: bool
) -> int:
    """CLI entry: run the demo, print, return the exit status."""
    try:
        load_scenario(scenario)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    ctx = tempfile.TemporaryDirectory(prefix="kiosk-demo-") if workdir is None else contextlib.nullcontext(str(workdir))
    with ctx as d:
        result = asyncio.run(run_demo(scenario, Path(d), speed=speed, config=config, trace=trace))
        if as_json:
            print(json.dumps({"ok": result.ok, "checks": [{"check": n, "ok": o} for n, o in result.checks]}))
    return 0 if result.ok else 1
