"""The composition root: settings -> adapters -> one TaskGroup.

``Kiosk`` wires the pure cores (the kiosk state machine and one Realtime session core per
visitor) to the adapters (microphone, speaker, lights, WebSocket, store, tools). It owns
no protocol logic of its own: it carries out commands and routes effects.

Concurrency: everything runs on one event loop. Device threads only hand work over with
``call_soon_threadsafe``. Each visitor session is one task (``VisitorLink``) with a
reader and a single sender, so client events leave in the order the core queued them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kiosk import conversation as cv
from kiosk.audio.echo import EchoPolicy
from kiosk.audio.ports import Microphone, Speaker
from kiosk.config import Settings
from kiosk.errors import FatalRealtimeError, RealtimeError
from kiosk.logs import event
from kiosk.panel import Lights
from kiosk.realtime import session as rs
from kiosk.realtime.connection import RealtimeConnection, Reconnector, TraceWriter
from kiosk.store import Store
from kiosk.tools import deals, leads
from kiosk.tools.registry import ToolContext, ToolRegistry

log = logging.getLogger(__name__)

GREETING = "Greet the visitor warmly in one short sentence and ask how you can help with investment property financing."
GOODBYE = "Our time is up: thank the visitor and say a short goodbye in one sentence."


class Observer(Protocol):
    """Hooks for the demo and tests (a no-op in the daemon)."""

    def transcript(self, role: str, text: str) -> None:
        """A finished transcript line."""

    def tool(self, name: str, arguments: str, output: str) -> None:
        """A tool ran."""

    def session_ended(self, reason: cv.EndReason, duration_s: float | None) -> None:
        """A visitor session ended."""

    def playing(self, playing: bool) -> None:
        """The speaker became audible (True) or quiet (False)."""


class NullObserver:
    """Observes nothing."""

    def transcript(self, role: str, text: str) -> None:
        """Ignore."""

    def tool(self, name: str, arguments: str, output: str) -> None:
        """Ignore."""

    def session_ended(self, reason: cv.EndReason, duration_s: float | None) -> None:
        """Ignore."""

    def playing(self, playing: bool) -> None:
        """Ignore."""


def default_tools(timeout_s: float) -> ToolRegistry:
    """The assistant's tools."""
    return ToolRegistry([deals.TOOL, leads.TOOL], timeout_s=timeout_s)


def load_instructions(settings: Settings) -> str:
    """The assistant's instructions, with branch values filled in."""
    path = settings.realtime.instructions_file
    try:
        template = path.read_text(encoding="utf-8")
    except OSError:
        log.warning("instructions file %s not readable; using a minimal prompt", path)
        template = "You are {lender_name}'s kiosk assistant. Answer in at most three short sentences."
    return template.format_map(_Blank(settings.branch.model_dump()))


class _Blank(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def session_config(settings: Settings, instructions: str, tools: ToolRegistry) -> rs.SessionConfig:
    """The Realtime session configuration from settings."""
    r = settings.realtime
    return rs.SessionConfig(
        model=r.model,
        voice=r.voice,
        instructions=instructions,
        tools=tuple(tools.schemas()),
        transcription_model=r.transcription_model,
        language=r.language,
        vad_threshold=r.vad_threshold,
        prefix_padding_ms=r.prefix_padding_ms,
        silence_duration_ms=r.silence_duration_ms,
        interrupt_response=r.interrupt_response,
        idle_timeout_ms=r.idle_timeout_ms,
        max_output_tokens=r.max_output_tokens,
    )


@dataclass
class Parts:
    """Everything a Kiosk runs with, built by the CLI (real devices) or the demo."""

    settings: Settings
    store: Store
    tools: ToolRegistry
    mic: Microphone
    speaker: Speaker
    lights: Lights
    instructions: str
    trace: TraceWriter | None = None
    offline_audio: bytes | None = None
    observer: Observer = field(default_factory=NullObserver)


class Kiosk:
    """The running kiosk."""

    def __init__(self, parts: Parts) -> None:
        self.p = parts
        s = parts.settings
        self.machine = cv.Conversation(
            cv.Timing(
                connect_timeout_s=s.session.connect_timeout_s,
                max_session_s=s.session.max_session_s,
                goodbye_s=s.session.goodbye_s,
            )
        )
        self.echo = EchoPolicy(s.echo.mode, s.echo.gate_margin_db, s.echo.warmup_ms / 1000)
        self.ctx = ToolContext(
            store=parts.store, kiosk_id=s.kiosk_id, branch=s.branch, phone_region=s.tools.default_phone_region
        )
        self.config = session_config(s, parts.instructions, parts.tools)
        self._inputs: asyncio.Queue[cv.Input] = asyncio.Queue()
        self._link: VisitorLink | None = None
        self._changed = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sessions_started = 0

    # -- inputs from anywhere -------------------------------------------------------

    def submit(self, inp: cv.Input) -> None:
        """Queue an input for the state machine (event-loop thread only)."""
        self._inputs.put_nowait(inp)

    def submit_threadsafe(self, inp: cv.Input) -> None:
        """Queue an input from a device thread (gpiozero, PortAudio)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._inputs.put_nowait, inp)

    @property
    def state(self) -> cv.State:
        """The state machine's state."""
        return self.machine.state

    async def wait_state(self, states: set[cv.State], *, limit_s: float) -> None:
        """Wait (at most ``limit_s``) until the state is one of ``states``."""
        async with asyncio.timeout(limit_s):
            while self.machine.state not in states:
                self._changed.clear()
                await self._changed.wait()

    # -- main ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        """Run until ``stop`` is set; ``ready`` is called once devices and store are up."""
        self._loop = asyncio.get_running_loop()
        await self.p.mic.start()
        await self.p.speaker.start(self._on_playing)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._execute(self.machine.handle(cv.Tick(), self._loop.time()))
                pump = tg.create_task(self._mic_pump(), name="mic-pump")
                machine = tg.create_task(self._machine_loop(), name="machine")
                if ready is not None:
                    ready()
                await stop.wait()
                self._execute(self.machine.handle(cv.Shutdown(), self._loop.time()))
                pump.cancel()
                machine.cancel()
                if self._link is not None:
                    self._link.task.cancel()
        finally:
            self._tg = None
            await self.p.mic.close()
            await self.p.speaker.close()
            self.p.lights.close()

    async def _machine_loop(self) -> None:
        assert self._loop is not None
        while True:
            deadline = self.machine.next_deadline
            timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
            try:
                async with asyncio.timeout(timeout):
                    inp = await self._inputs.get()
            except TimeoutError:
                inp = cv.Tick()
            self._execute(self.machine.handle(inp, self._loop.time()))
            self._changed.set()

    def _on_playing(self, playing: bool) -> None:
        assert self._loop is not None
        self.echo.playback(playing, self._loop.time())
        self.submit(cv.AssistantAudio(playing))
        self.p.observer.playing(playing)

    async def _mic_pump(self) -> None:
        assert self._loop is not None
        mic, speaker = self.p.mic, self.p.speaker
        while True:
            chunk = await mic.read()
            link = self._link
            if link is None or not link.ready:
                continue
            now = self._loop.time()
            self.echo.reference(speaker.level_dbfs(), now)
            link.send_audio(self.echo.filter(chunk, now))

    # -- commands -----------------------------------------------------------------

    def _execute(self, commands: list[cv.Command]) -> None:
        for c in commands:
            match c:
                case cv.Connect(session_no=n):
                    self._start_link(n)
                case cv.Greet():
                    if self._link is not None:
                        self._link.request_response(GREETING)
                case cv.SayGoodbye():
                    if self._link is not None:
                        self._link.request_response(GOODBYE)
                case cv.StopPlayback():
                    self.p.speaker.flush()
                case cv.Hangup(reason=reason, duration_s=duration):
                    self._hangup(reason, duration)
                case cv.Wipe():
                    self.ctx.wipe()
                    self.p.speaker.forget()
                case cv.PlayOfflineMessage():
                    self._play_offline()
                case cv.Lights(pattern=pattern):
                    self.p.lights.show(pattern)

    def _start_link(self, session_no: int) -> None:
        assert self._tg is not None
        session_id = uuid.uuid4().hex
        self.ctx.new_session(session_id)
        self.sessions_started += 1
        log.info(
            "visitor session %s started",
            session_no,
            extra=event("session_start", session=session_id, session_no=session_no),
        )
        link = VisitorLink(self, session_id)
        link.task = self._tg.create_task(link.run(), name=f"visitor-{session_no}")
        self._link = link

    def _hangup(self, reason: cv.EndReason, duration: float | None) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.task.cancel()
            usage = link.usage
            log.info(
                "visitor session ended (%s) after %.1f s",
                reason.value,
                duration or 0.0,
                extra=event(
                    "session_end",
                    session=link.session_id,
                    reason=reason.value,
                    duration_s=round(duration or 0.0, 1),
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                ),
            )
        self.p.observer.session_ended(reason, duration)

    def _play_offline(self) -> None:
        audio = self.p.offline_audio
        if audio:
            self.p.speaker.write(audio, "offline")
            self.p.speaker.end_of_stream()
        log.warning("Realtime unavailable: offline message played", extra=event("offline"))


class VisitorLink:
    """One visitor's Realtime session: connect, configure, read, send, run tools, reconnect."""

    def __init__(self, kiosk: Kiosk, session_id: str) -> None:
        self.k = kiosk
        self.session_id = session_id
        self.task: asyncio.Task[None]
        self.core: rs.RealtimeSession | None = None
        self.ready = False
        self._kick = asyncio.Event()
        self._children: set[asyncio.Task[None]] = set()
        self.usage = rs.Usage()

    def send_audio(self, pcm: bytes) -> None:
        """Queue visitor audio (only once the session is ready)."""
        if self.core is not None and self.ready:
            self.core.append_audio(pcm)
            self._kick.set()

    def request_response(self, instructions: str) -> None:
        """Ask the assistant to speak (greeting, goodbye)."""
        if self.core is not None:
            self.core.request_response(instructions)
            self._kick.set()

    async def run(self) -> None:
        """Connect and serve until cancelled (hangup) or hopeless; never takes the daemon down."""
        try:
            await self._run()
        except Exception:
            log.exception("visitor session failed", extra=event("session_error", session=self.session_id))
            self.k.submit(cv.ReconnectFailed("internal error") if self.ready else cv.ConnectFailed("internal error"))

    async def _run(self) -> None:
        s = self.k.p.settings.realtime
        loop = asyncio.get_running_loop()
        recon = Reconnector(s.backoff_base_s, s.backoff_cap_s, s.stable_after_s)
        previous: rs.RealtimeSession | None = None
        while True:
            try:
                conn = await RealtimeConnection.open(
                    s.url,
                    s.model,
                    self.k.p.settings.secrets.openai_api_key,
                    connect_timeout=s.connect_timeout_s,
                    ping_interval=s.ping_interval_s,
                    trace=self.k.p.trace,
                )
            except FatalRealtimeError as exc:
                self.k.submit(
                    cv.ConnectFailed(str(exc), fatal=True)
                    if previous is None
                    else cv.ReconnectFailed(str(exc), fatal=True)
                )
                return
            except RealtimeError as exc:
                if previous is None:
                    log.warning("connect failed: %s", exc, extra=event("connect_failed"))
                    self.k.submit(cv.ConnectFailed(str(exc)))
                    return
                delay = recon.next_delay(loop.time())
                log.info("reconnect failed (%s); next try in %.1f s", exc, delay, extra=event("reconnect_wait"))
                await asyncio.sleep(delay)
                continue
            recon.connected(loop.time())
            core = rs.RealtimeSession(self.k.config, id_prefix=f"k{self.session_id[:6]}")
            if previous is None:
                core.start()
            else:
                previous.replay_into(core)
                log.info("reconnected; conversation replayed", extra=event("reconnected", session=self.session_id))
            self.core = core
            try:
                await self._serve(conn, core)
            except FatalRealtimeError as exc:
                self.k.submit(cv.Fatal(str(exc)))
                return
            except RealtimeError as exc:
                log.warning(
                    "Realtime connection lost: %s", exc, extra=event("connection_lost", session=self.session_id)
                )
                self.ready = False
                self.k.submit(cv.ConnectionLost(str(exc)))
                previous = core
                await asyncio.sleep(recon.next_delay(loop.time()))
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _serve(self, conn: RealtimeConnection, core: rs.RealtimeSession) -> None:
        """Read and send until the connection fails; tool runs die with the connection."""
        sender = asyncio.create_task(self._sender(conn, core))
        reader = asyncio.create_task(self._reader(conn, core))
        try:
            done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
        finally:
            tasks = [sender, reader, *self._children]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._children.clear()

    async def _sender(self, conn: RealtimeConnection, core: rs.RealtimeSession) -> None:
        self._kick.set()
        while True:
            await self._kick.wait()
            self._kick.clear()
            for e in core.drain():
                await conn.send(e)

    async def _reader(self, conn: RealtimeConnection, core: rs.RealtimeSession) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await conn.recv()
            for eff in core.receive(frame, loop.time()):
                self._effect(eff, core)
            self._kick.set()

    def _effect(self, eff: rs.Effect, core: rs.RealtimeSession) -> None:
        k = self.k
        match eff:
            case rs.Ready():
                self.ready = True
                k.submit(cv.SessionReady())
            case rs.PlayAudio(item_id=item, pcm=pcm):
                k.p.speaker.write(pcm, item)
            case rs.FlushPlayback():
                core.playback_flushed(k.p.speaker.flush())
            case rs.VisitorSpeaking(speaking=speaking):
                k.submit(cv.VisitorSpeech(speaking))
            case rs.Transcript(role=role, text=text):
                k.ctx.transcript.append((role, text))
                k.p.observer.transcript(role, text)
            case rs.RunTools(calls=calls):
                self._children.add(asyncio.create_task(self._run_tools(calls, core)))
            case rs.ResponseFinished(status=status, usage=usage):
                self.usage = self.usage + usage
                k.p.speaker.end_of_stream()
                log.debug("response %s %s", eff.response_id, status)
            case rs.IdleTimeout():
                log.info("visitor silent; assistant checks in", extra=event("idle_timeout", session=self.session_id))
            case rs.Recycle(reason=reason):
                raise RealtimeError(f"session must be recycled: {reason}")
            case rs.FatalError(code=code, message=message):
                raise FatalRealtimeError(f"{code}: {message}")

    async def _run_tools(self, calls: tuple[rs.ToolCall, ...], core: rs.RealtimeSession) -> None:
        results = []
        for call in calls:
            output = await self.k.p.tools.call(call.name, call.arguments, self.k.ctx)
            self.k.p.observer.tool(call.name, call.arguments, output)
            log.info(
                "tool %s ran",
                call.name,
                extra=event("tool", tool=call.name, session=self.session_id, ok='"error"' not in output[:12]),
            )
            results.append((call.call_id, output))
        core.tool_results(results)
        self._kick.set()


def read_offline_audio(path: Path | None) -> bytes | None:
    """The offline message WAV, if configured and readable."""
    if path is None:
        return None
    from kiosk.audio.pcm import read_wav

    try:
        return read_wav(path)
    except (OSError, ValueError) as exc:
        log.warning("offline message %s unusable: %s", path, exc)
        return None
