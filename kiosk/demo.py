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
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kiosk import conversation as cv
from kiosk.app import Kiosk, Parts, default_tools, load_instructions, read_offline_audio
from kiosk.audio.files import ScriptedMicrophone, WavSpeaker
from kiosk.audio.pcm import read_wav
from kiosk.config import load_settings
from kiosk.panel import RecordingLights
from kiosk.realtime.connection import TraceWriter
from kiosk.sim.scenario import Scenario, load_scenario
from kiosk.sim.server import SimOptions, SimServer
from kiosk.store import Store

log = logging.getLogger(__name__)

TURN_TIMEOUT_S = 30.0


@dataclass
class DemoObserver:
    """Prints the conversation as it happens and keeps what the checks need."""

    out: TextIO
    lines: list[tuple[str, str]] = field(default_factory=list)
    tools: list[tuple[str, str]] = field(default_factory=list)
    ended: list[cv.EndReason] = field(default_factory=list)
    assistant_lines: asyncio.Event = field(default_factory=asyncio.Event)
    playback_done: asyncio.Event = field(default_factory=asyncio.Event)

    def transcript(self, role: str, text: str) -> None:
        """Print and remember a line."""
        self.lines.append((role, text))
        who = "Assistant" if role == "assistant" else "Visitor  "
        print(f"  {who}: {text}", file=self.out, flush=True)
        if role == "assistant":
            self.assistant_lines.set()

    def tool(self, name: str, arguments: str, output: str) -> None:
        """Print a tool call briefly."""
        self.tools.append((name, output))
        verdict = "error" if '"error"' in output else "ok"
        print(f"  [tool {name}: {verdict}]", file=self.out, flush=True)

    def session_ended(self, reason: cv.EndReason, duration_s: float | None) -> None:
        """Remember why."""
        self.ended.append(reason)

    def playing(self, playing: bool) -> None:
        """The speaker went audible or quiet."""
        if not playing:
            self.playback_done.set()


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


async def _assistant_turn(obs: DemoObserver) -> None:
    """Wait until the assistant has said something and finished playing it."""
    async with asyncio.timeout(TURN_TIMEOUT_S):
        await obs.assistant_lines.wait()
        obs.assistant_lines.clear()
        # The transcript is complete before playback is (replies stream faster than real
        # time): wait for the speaker to go quiet after it.
        obs.playback_done.clear()
        await obs.playback_done.wait()


async def _visitor(kiosk: Kiosk, mic: ScriptedMicrophone, scenario: Scenario, obs: DemoObserver, speed: float) -> None:
    kiosk.submit(cv.ButtonPressed())
    await kiosk.wait_state({cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING}, limit_s=15)
    await _assistant_turn(obs)
    for turn in scenario.turns:
        await asyncio.sleep(turn.pause_ms / 1000 / speed)
        if turn.visitor_audio is None:
            raise ValueError(f"scenario {scenario.name}: turn {turn.visitor!r} has no visitor_audio")
        done = mic.say(read_wav(turn.visitor_audio))
        async with asyncio.timeout(TURN_TIMEOUT_S):
            await done.wait()
        await _assistant_turn(obs)
    kiosk.submit(cv.ButtonPressed())  # the visitor presses the button to finish
    await kiosk.wait_state({cv.State.IDLE}, limit_s=10)


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
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    store_path = workdir / "kiosk.db"
    speaker_wav = workdir / "assistant.wav"
    sim = SimServer(SimOptions(scenario=scenario, record_sent=record))
    await sim.start()
    loaded = load_settings(
        config,
        overrides={
            "realtime": {"url": sim.url},
            "store": {"path": str(store_path)},
            "secrets": {"openai_api_key": "sim-key"},
        },
    )
    settings = loaded.settings
    store = Store(settings.store.path)
    tools = default_tools(settings.tools.timeout_s)
    mic = ScriptedMicrophone(settings.audio.chunk_ms, speed=speed)
    speaker = WavSpeaker(speaker_wav, settings.audio.prebuffer_ms, speed=speed)
    lights = RecordingLights()
    obs = DemoObserver(out)
    tracer = TraceWriter(trace) if trace else None
    parts = Parts(
        settings=settings,
        store=store,
        tools=tools,
        mic=mic,
        speaker=speaker,
        lights=lights,
        instructions=load_instructions(settings),
        trace=tracer,
        observer=obs,
        offline_audio=read_offline_audio(None),
    )
    kiosk = Kiosk(parts)
    print(f"Scenario {scenario.name}: {scenario.description}", file=out, flush=True)
    stop = asyncio.Event()
    error: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(kiosk.run(stop))
            try:
                await _visitor(kiosk, mic, scenario, obs, speed)
            except (TimeoutError, ValueError) as exc:
                error = exc
            finally:
                stop.set()
            await runner
    finally:
        await sim.close()
        if tracer is not None:
            tracer.close()
    checks = _checks(scenario, store, obs, sim, error)
    store.close()
    _summary(out, checks, store_path, speaker_wav)
    return DemoResult(checks, store_path, speaker_wav, trace, sim)


def _checks(
    scenario: Scenario, store: Store, obs: DemoObserver, sim: SimServer, error: BaseException | None
) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = [
        ("visitor got through every scripted turn" + (f" ({error!r})" if error else ""), error is None),
        ("assistant greeted first", bool(obs.lines) and obs.lines[0][0] == "assistant"),
    ]
    expect = scenario.expect
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
    errors = [e for s in sim.sessions for e in s.received if "raw" in e]
    checks.append((f"every client event accepted by the simulator ({len(errors)} rejected)", not errors))
    if "end_reason" in expect:
        got = obs.ended[-1].value if obs.ended else None
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
