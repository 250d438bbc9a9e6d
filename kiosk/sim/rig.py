"""A complete kiosk on the simulator, with file-backed audio: the demo's and the tests' rig.

Everything is real except the devices and the service: the kiosk's own code, a real
WebSocket server on loopback, a real SQLite file. ``speed`` > 1 runs audio faster than
real time (the simulator's VAD works on audio time, so the conversation is the same).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from kiosk import conversation as cv
from kiosk.audio.files import ScriptedMicrophone, WavSpeaker
from kiosk.audio.ports import Recording
from kiosk.config import Settings, load_settings
from kiosk.leads.store import Store
from kiosk.panel.ports import RecordingLights
from kiosk.realtime.connection import TraceWriter
from kiosk.runtime.compose import build_kiosk
from kiosk.runtime.kiosk import Kiosk
from kiosk.sim.room import Room, RoomMicrophone
from kiosk.sim.scenario import Scenario
from kiosk.sim.server import Faults, Habits, SimOptions, SimServer

TURN_TIMEOUT_S = 30.0


@dataclass
class Recorder:
    """Observes the kiosk: prints the conversation (optionally) and keeps what checks need."""

    out: TextIO | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)
    tools: list[tuple[str, str, str]] = field(default_factory=list)
    ended: list[cv.EndReason] = field(default_factory=list)
    assistant_lines: asyncio.Event = field(default_factory=asyncio.Event)
    playback_done: asyncio.Event = field(default_factory=asyncio.Event)
    playback_started: asyncio.Event = field(default_factory=asyncio.Event)

    def transcript(self, role: str, text: str) -> None:
        """Print and remember a line."""
        self.lines.append((role, text))
        if self.out is not None:
            who = "Assistant" if role == "assistant" else "Visitor  "
            print(f"  {who}: {text}", file=self.out, flush=True)
        if role == "assistant":
            # The reply's playback ends after its transcript line (the speaker plays out only
            # after response.done): forget earlier ends here, in the same callback, so a
            # waiter cannot miss this reply's end however late it wakes.
            self.playback_done.clear()
            self.assistant_lines.set()

    def tool(self, name: str, arguments: str, output: str) -> None:
        """Remember (and print briefly) a tool call."""
        self.tools.append((name, arguments, output))
        if self.out is not None:
            verdict = "error" if output.startswith('{"error"') else "ok"
            print(f"  [tool {name}: {verdict}]", file=self.out, flush=True)

    def visit_ended(self, reason: cv.EndReason, duration_s: float | None) -> None:
        """Remember why."""
        self.ended.append(reason)

    def playing(self, playing: bool) -> None:
        """The speaker went audible or quiet."""
        (self.playback_started if playing else self.playback_done).set()


class Rig:
    """Simulator + kiosk + scripted visitor audio."""

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        *,
        speed: float = 4.0,
        out: TextIO | None = None,
        config: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        faults: Faults | None = None,
        habits: Habits | None = None,
        trace: Path | None = None,
        record: bool = False,
        room: Room | None = None,
    ) -> None:
        self.scenario = scenario
        self.room = room  # with a room, the speaker's sound leaks into the microphone
        self.workdir = workdir
        self.speed = speed
        # The scenario's world (faults, settings, earlier usage) first; explicit arguments win.
        if faults is None:
            try:
                faults = Faults(**scenario.faults)
            except TypeError as exc:
                raise ValueError(f"scenario {scenario.name}: bad faults {scenario.faults!r}: {exc}") from None
        if habits is None:
            try:
                habits = Habits(**scenario.service)
            except TypeError as exc:
                raise ValueError(f"scenario {scenario.name}: bad service {scenario.service!r}: {exc}") from None
        # Replies must stream faster than the speaker plays them, as the service's do: a
        # speaker that outruns the stream underruns, which the kiosk takes for the end of a reply.
        stream_speed = max(8.0, 2 * speed)
        self.sim = SimServer(
            SimOptions(scenario=scenario, record_sent=record, faults=faults, habits=habits, stream_speed=stream_speed)
        )
        self._config = config
        self._overrides: dict[str, dict[str, Any]] = {k: dict(v) for k, v in scenario.overrides.items()}
        for section, values in (overrides or {}).items():
            self._overrides[section] = {**self._overrides.get(section, {}), **values}
        self.day = date.today().isoformat()  # one local day for the whole run (budgets)
        self.offline_audio: bytes | None = None
        self.unavailable_audio: bytes | None = None
        self.trace_path = trace
        self.rec = Recorder(out)
        self.lights = RecordingLights()
        self.store_path = workdir / "kiosk.db"
        self.speaker_wav = workdir / "assistant.wav"
        self.kiosk: Kiosk
        self.settings: Settings
        self.store: Store
        self.mic: ScriptedMicrophone
        self.speaker: WavSpeaker

    def _settings(self) -> Settings:
        base: dict[str, Any] = {
            "realtime": {"url": self.sim.url},
            "store": {"path": str(self.store_path)},
            "secrets": {"openai_api_key": "sim-key"},
        }
        for section, values in self._overrides.items():
            base[section] = {**base.get(section, {}), **values}
        return load_settings(self._config, overrides=base).settings

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Rig]:
        """Start the simulator and the kiosk; stop both on exit."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self.sim.start()
        tracer = TraceWriter(self.trace_path) if self.trace_path else None
        try:
            self.settings = self._settings()
            self.store = Store(self.settings.store.path)
            self._seed_usage()
            chunk_ms, prebuffer_ms = self.settings.audio.chunk_ms, self.settings.audio.prebuffer_ms
            if self.room is None:
                self.mic = ScriptedMicrophone(chunk_ms, speed=self.speed)
                self.speaker = WavSpeaker(self.speaker_wav, prebuffer_ms, speed=self.speed)
            else:
                self.mic = RoomMicrophone(self.room, chunk_ms, speed=self.speed)
                self.speaker = WavSpeaker(self.speaker_wav, prebuffer_ms, speed=self.speed, tap=self.room.tap)
            self.kiosk = build_kiosk(
                self.settings,
                self.store,
                self.mic,
                self.speaker,
                self.lights,
                trace=tracer,
                observer=self.rec,
                today=lambda: self.day,
            )
            self.offline_audio = _pcm(self.kiosk.p.offline_audio)
            self.unavailable_audio = _pcm(self.kiosk.p.unavailable_audio)
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                up = asyncio.Event()
                runner = tg.create_task(self.kiosk.run(stop, ready=up.set))
                try:
                    async with asyncio.timeout(10):
                        await up.wait()
                    yield self
                finally:
                    stop.set()
                await runner
        finally:
            await self.sim.close()
            if tracer is not None:
                tracer.close()

    def _seed_usage(self) -> None:
        """``setup.spent_today_usd``: earlier visitors today already cost this much."""
        spent = float(self.scenario.setup.get("spent_today_usd", 0.0))
        if spent > 0:
            self.store.record_usage("earlier-visitors", self.day, {"input_tokens": 0, "output_tokens": 0}, spent)

    # -- the world around the kiosk ----------------------------------------------------

    def restore_network(self) -> None:
        """The outage is over: the simulator accepts connections again."""
        self.sim.opts.faults = Faults()

    # -- the visitor's actions -------------------------------------------------------

    async def press(self, until: set[cv.State] | None = None, limit_s: float = 15.0) -> None:
        """Press the button; optionally wait for one of ``until``.

        A press that starts a session waits (briefly) for the warm standby first, as a
        visitor walking up would, so each visit is one simulator session.
        """
        await self.kiosk.wait_for_standby(10)
        self.kiosk.submit(cv.ButtonPressed())
        if until:
            await self.kiosk.wait_state(until, limit_s=limit_s)

    async def say(self, pcm: bytes) -> None:
        """Speak ``pcm`` into the microphone and wait until all of it was captured."""
        done = self.mic.say(pcm)
        async with asyncio.timeout(TURN_TIMEOUT_S):
            await done.wait()

    async def pause(self, ms: float) -> None:
        """Stay silent for ``ms`` of audio time."""
        await asyncio.sleep(ms / 1000 / self.speed)

    def expect_audio(self) -> None:
        """Forget earlier playback events: call before the action whose audio you wait for."""
        self.rec.playback_started.clear()
        self.rec.playback_done.clear()

    async def hear_local_message(self, limit_s: float = TURN_TIMEOUT_S) -> None:
        """Wait until a local prerecorded message (offline, unavailable) has started and played out.

        Call :meth:`expect_audio` before the press that plays it.
        """
        async with asyncio.timeout(limit_s):
            await self.rec.playback_started.wait()
            await self.rec.playback_done.wait()

    async def assistant_starts(self, limit_s: float = TURN_TIMEOUT_S) -> None:
        """Wait until the assistant's next reply becomes audible (call :meth:`expect_audio` first)."""
        async with asyncio.timeout(limit_s):
            await self.rec.playback_started.wait()

    async def talk_over(self, after_ms: float, pcm: bytes, limit_s: float = TURN_TIMEOUT_S) -> None:
        """Barge in: once the assistant is audible, wait ``after_ms`` of audio time, then speak."""
        await self.assistant_starts(limit_s)
        await self.pause(after_ms)
        await self.say(pcm)

    async def assistant_turn(self) -> None:
        """Wait until the assistant has said something and finished playing it."""
        async with asyncio.timeout(TURN_TIMEOUT_S):
            await self.rec.assistant_lines.wait()
            self.rec.assistant_lines.clear()
            # Replies stream faster than real time, so the transcript is complete before
            # playback is: wait for the speaker to go quiet after it.
            await self.rec.playback_done.wait()


def _pcm(message: Recording | None) -> bytes | None:
    """What a prerecorded message plays (the checks look for it in what the speaker heard)."""
    return message.pcm() if message is not None else None
