"""The kiosk process of the audio benchmarks: a real ``Kiosk`` on FIFO audio against a simulator elsewhere.

Run as ``python -m kiosk.bench.duplex`` by :mod:`kiosk.bench.cli`, so its CPU time and
memory are the kiosk's alone (the simulator runs in another process). The kiosk is built
like the daemon builds it, with the file adapters instead of PortAudio (a ``FileMicrophone``
on a FIFO fed by :class:`~kiosk.bench.probe.FifoCard`, a self-clocked ``RawSpeaker``); the
only additions are the probes, when asked for: a ``TimedBuffer`` in the speaker and a
``ProbeTrace`` as the wire trace.

Modes:

* ``sessions``: visits, each a greeting, then ``cycles`` times "the visitor
  interrupts the reply with the next question"; reports the probes' timings, press-to-
  first-audio and the resident set size after each session;
* ``stream``: one session whose greeting plays for the whole window while the microphone
  streams; reports the kiosk's CPU use (the card threads' own CPU subtracted), per thread too;
* ``idle``: the same figures with nobody there (the microphone streaming room noise, the
  speaker silent): most of a kiosk's day;
* ``bare``: the same workload through the kiosk's Realtime client alone
  (:mod:`kiosk.bench.bare`), the baseline of ``cpu_ratio_full_to_bare``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from kiosk import conversation as cv
from kiosk.audio.files import FileMicrophone, RawSpeaker
from kiosk.bench import analyse as an
from kiosk.bench import bare, threads
from kiosk.bench.probe import FifoCard, ProbeTrace, TimedBuffer, TimedMicrophone
from kiosk.bench.voices import visitor_utterance
from kiosk.config import Settings, load_settings
from kiosk.leads.store import Store
from kiosk.runtime.compose import build_kiosk

LIMIT_S = 20.0  # any single wait; a stuck benchmark fails instead of hanging


class NoLights:
    """Lights that remember nothing (a recording list would grow over the sessions)."""

    def show(self, pattern: cv.Pattern) -> None:
        """Ignore."""

    def close(self) -> None:
        """Nothing to release."""


class Watch:
    """The kiosk observer: playback transitions, in order."""

    def __init__(self) -> None:
        self.changes: asyncio.Queue[bool] = asyncio.Queue()

    def transcript(self, role: str, text: str) -> None:
        """Ignore."""

    def tool(self, name: str, arguments: str, output: str) -> None:
        """Ignore."""

    def visit_ended(self, reason: cv.EndReason, duration_s: float | None) -> None:
        """Ignore."""

    def playing(self, playing: bool) -> None:
        """Queue the transition."""
        self.changes.put_nowait(playing)

    async def until(self, playing: bool) -> None:
        """Wait for the next transition to ``playing``."""
        async with asyncio.timeout(LIMIT_S):
            while await self.changes.get() is not playing:
                pass


def rss_kb(field: str = "VmRSS") -> int:
    """A memory figure of this process from /proc (kB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def settings_for(url: str, workdir: Path, config: Path | None, *, warm: bool) -> Settings:
    """The given configuration (None: the kiosk's default), pointed at the simulator and a scratch database."""
    return load_settings(
        config,
        overrides={
            "realtime": {"url": url, "warm_standby": warm},
            "store": {"path": str(workdir / "kiosk.db")},
            "secrets": {"openai_api_key": "sim-key"},
        },
    ).settings


class Bench:
    """One kiosk on one card."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        workdir = Path(args.workdir)
        self.settings = settings_for(args.url, workdir, args.config, warm=not args.cold)
        a = self.settings.audio
        # The card's periods are 10 ms; the microphone's device period is the configured one.
        mic_period_ms = a.input_period_ms or a.period_ms
        self.card = FifoCard(workdir, marks=args.probes, block_periods=mic_period_ms // 10)
        mic_class = TimedMicrophone if args.probes else FileMicrophone
        self.mic = mic_class(self.card.mic_path, chunk_ms=a.chunk_ms, period_ms=mic_period_ms)
        self.speaker = RawSpeaker(self.card.speaker_path, prebuffer_ms=a.prebuffer_ms, period_ms=a.period_ms)
        self.timed: TimedBuffer | None = None
        self.trace: ProbeTrace | None = None
        if args.probes:
            self.timed = TimedBuffer(a.prebuffer_ms)
            self.speaker.buffer = self.timed
            self.trace = ProbeTrace()
            self.trace.mic = self.mic if isinstance(self.mic, TimedMicrophone) else None
        self.watch = Watch()
        self.store = Store(self.settings.store.path)
        # The bench's own lights (no history kept) and no prerecorded messages in play: the
        # rest is built exactly as the daemon builds it.
        self.kiosk = build_kiosk(
            self.settings, self.store, self.mic, self.speaker, NoLights(), trace=self.trace, observer=self.watch
        )
        self.result: dict[str, Any] = {}

    async def run(self) -> dict[str, Any]:
        """Run the kiosk and the chosen visitor script; return the measurements."""
        self.card.start()
        stop = asyncio.Event()
        up = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                runner = tg.create_task(self.kiosk.run(stop, ready=up.set))
                try:
                    async with asyncio.timeout(LIMIT_S):
                        await up.wait()
                    if self.args.mode == "stream":
                        await self.stream()
                    elif self.args.mode == "idle":
                        await self.idle()
                    else:
                        await self.sessions()
                finally:
                    stop.set()
                await runner
        finally:
            self.card.close()
            self.store.close()
        return self.result

    async def press(self) -> None:
        """A button press; a new session first waits for the warm standby, as a visitor walking up would."""
        await self.kiosk.wait_for_standby(LIMIT_S)
        self.kiosk.submit(cv.ButtonPressed())

    async def say(self, pcm: bytes) -> None:
        """The visitor speaks (returns when all of it was captured)."""
        done = self.card.say(pcm)
        await asyncio.wait_for(asyncio.to_thread(done.wait, LIMIT_S), LIMIT_S + 1)

    async def sessions(self) -> None:
        """Greeting, then ``cycles`` barge-ins each asking the next question; RSS after each session."""
        utter = visitor_utterance()
        rss: list[int] = []
        for _ in range(self.args.sessions):
            await self.press()
            await self.watch.until(True)
            await self.watch.until(False)  # the greeting played out
            if self.args.cycles:
                await self.say(utter)
                await self.watch.until(True)
            for _ in range(self.args.cycles):
                await asyncio.sleep(0.6)  # past the echo gate's warm-up: the visitor cuts in
                await self.say(utter)
                await self.watch.until(False)
                await self.watch.until(True)  # the answer to the interruption
            await self.press()  # the visitor ends the session
            await self.kiosk.wait_state({cv.State.IDLE}, limit_s=LIMIT_S)
            if self.kiosk.standby is not None:
                async with asyncio.timeout(LIMIT_S):
                    await self.kiosk.standby.settled.wait()
            while not self.watch.changes.empty():
                self.watch.changes.get_nowait()
            rss.append(rss_kb())
        self.result.update(
            rss_kb=rss,
            hwm_kb=rss_kb("VmHWM"),
            anon_kb=rss_kb("RssAnon"),  # heap and the like; the rest is shared libraries' pages
            file_kb=rss_kb("RssFile"),
            first_audio_ms=list(self.kiosk.first_audio_ms),
        )
        if self.trace is not None and self.timed is not None:
            self.result.update(self.probe_results())

    def probe_results(self) -> dict[str, Any]:
        """The probes' raw timings turned into per-event latencies (ms)."""
        assert self.trace is not None and self.timed is not None
        tr, tb = self.trace, self.timed
        return {
            "mic_to_wire": an.mic_to_wire(self.card.captured, tr.sends),
            "wire_to_buffer": an.wire_to_buffer(tr.deltas, tb.writes),
            "wire_to_speaker": an.wire_to_speaker(tr.deltas, tb.handed),
            "barge_in": an.barge_in(tr.speech_started, tb.reads),
            "truncation_error": an.truncation_errors(tr.truncates, tr.deltas, tb.handed, bytes(tb.output)),
            "deletes": tr.deletes,
            "underruns": tb.underruns,
        }

    async def stream(self) -> None:
        """Full duplex for ``seconds``: the greeting plays throughout while the microphone streams room noise."""
        self.card.noise = 100  # about -50 dBFS: below the VAD, but not digital silence
        await self.press()
        await self.watch.until(True)
        await self.measure()
        self.result["still_playing"] = self.watch.changes.empty()
        await self.press()
        with contextlib.suppress(TimeoutError):
            await self.kiosk.wait_state({cv.State.IDLE}, limit_s=LIMIT_S)

    async def idle(self) -> None:
        """Nobody there for ``seconds``: the microphone streams room noise, the speaker is silent."""
        self.card.noise = 100
        await self.kiosk.wait_for_standby(LIMIT_S)
        await asyncio.sleep(1.5)  # past the echo stage's quiet_after_s since the start
        await self.measure()

    async def measure(self) -> None:
        """The kiosk's CPU over ``seconds`` (the card's own subtracted), per thread and in the echo stage."""
        echo = self.kiosk.p.echo
        wall0, cpu0, card0 = time.monotonic(), time.process_time(), self.card.cpu_s
        echo0 = echo.cpu_s if echo is not None else 0.0
        canceller0 = echo.canceller_cpu_s if echo is not None else 0.0
        threads0 = threads.thread_cpu()
        await asyncio.sleep(self.args.seconds)
        wall, cpu, card = time.monotonic() - wall0, time.process_time() - cpu0, self.card.cpu_s - card0
        self.result.update(
            wall_s=wall,
            cpu_s=cpu - card,
            card_cpu_s=card,
            cpu_percent=100 * (cpu - card) / wall,
            echo_stage_cpu_s=(echo.cpu_s - echo0) if echo is not None else 0.0,
            canceller_cpu_s=(echo.canceller_cpu_s - canceller0) if echo is not None else 0.0,
            echo_frames=echo.frames if echo is not None else 0,
            underruns=self.speaker.buffer.underruns,
            thread_cpu_s=threads.difference(threads.thread_cpu(), threads0),
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the kiosk process; writes the result as JSON to ``--out``."""
    p = argparse.ArgumentParser(prog="python -m kiosk.bench.duplex")
    p.add_argument("--mode", choices=("sessions", "stream", "idle", "bare"), required=True)
    p.add_argument("--url", required=True, help="the simulator's realtime URL")
    p.add_argument("--workdir", required=True)
    p.add_argument("--config", type=Path, help="kiosk configuration (default: the kiosk's own default)")
    p.add_argument("--out", required=True)
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--cycles", type=int, default=1)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--cold", action="store_true", help="no warm standby: every press connects")
    p.add_argument("--probes", action="store_true", help="marked audio, timed buffer and probing trace")
    args = p.parse_args(argv)
    if args.mode == "bare":
        Path(args.workdir).mkdir(parents=True, exist_ok=True)  # the result is written there
        settings = settings_for(args.url, Path(args.workdir), args.config, warm=False)
        result = asyncio.run(bare.run(args, settings))
    else:
        result = asyncio.run(Bench(args).run())
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
