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
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr

from kiosk import budget
from kiosk import conversation as cv
from kiosk.audio.echo import EchoPolicy
from kiosk.audio.ports import Microphone, Speaker
from kiosk.audio.vad import LedVad
from kiosk.config import RealtimeSettings, Settings
from kiosk.errors import StoreError
from kiosk.leads.mail import queue_officer_email
from kiosk.leads.store import Store
from kiosk.leads.sync import Syncer
from kiosk.logs import event
from kiosk.panel.ports import Lights
from kiosk.realtime import session as rs
from kiosk.realtime.connection import RealtimeConnection, TraceWriter
from kiosk.realtime.standby import Standby
from kiosk.runtime.visit import VisitorLink
from kiosk.tools import catalog
from kiosk.tools.registry import ToolContext, ToolRegistry

log = logging.getLogger(__name__)

GREETING = "Greet the visitor warmly in one short sentence and ask how you can help with investment property financing."
GOODBYE = "Our time is up: thank the visitor and say a short goodbye in one sentence."
IDLE_GOODBYE = (
    "The visitor seems to have left: say in one short sentence that you are ending the chat and they can press the "
    "button any time to start again."
)


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


def default_tools(timeout_s: float, settings: Settings) -> ToolRegistry:
    """The assistant's six tools over the configured knowledge base, rubric and web search."""
    return ToolRegistry(catalog.build_tools(settings), timeout_s=timeout_s)


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
    unavailable_audio: bytes | None = None
    syncer: Syncer | None = None  # the outbox consumer (the daemon); None in the demo and most tests
    observer: Observer = field(default_factory=NullObserver)
    today: Callable[[], str] = field(default=lambda: date.today().isoformat())  # the local day, for budgets


def build_parts(
    settings: Settings,
    store: Store,
    mic: Microphone,
    speaker: Speaker,
    lights: Lights,
    **extra: Any,
) -> Parts:
    """Parts with everything that follows from the settings: the tools, the instructions and
    the prerecorded messages. ``extra`` sets the rest (trace, observer, syncer, today)."""
    return Parts(
        settings=settings,
        store=store,
        tools=default_tools(settings.tools.timeout_s, settings),
        mic=mic,
        speaker=speaker,
        lights=lights,
        instructions=load_instructions(settings),
        offline_audio=read_message(settings.session.offline_message),
        unavailable_audio=read_message(settings.session.unavailable_message),
        **extra,
    )


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
                idle_end_s=s.session.idle_end_s,
            )
        )
        self.echo = EchoPolicy(s.echo.mode, s.echo.gate_margin_db, s.echo.warmup_ms / 1000)
        self.vad = LedVad(s.vad.aggressiveness, s.vad.frame_ms, s.vad.hangover_ms)
        self.ctx = ToolContext(
            store=parts.store, kiosk_id=s.kiosk_id, branch=s.branch, phone_region=s.tools.default_phone_region
        )
        self.config = session_config(s, parts.instructions, parts.tools)
        self._inputs: asyncio.Queue[cv.Input] = asyncio.Queue()
        self._link: VisitorLink | None = None
        self._changed = asyncio.Condition()
        self._tg: asyncio.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sessions_started = 0
        self.chunks_pumped = 0  # progress of the loop's audio path (watchdog probe)
        self._mic_s = 0.0  # seconds of audio captured since start
        self.standby: Standby | None = None
        self._pressed_at: float | None = None
        self.first_audio_ms: list[float] = []  # press to first audible assistant audio, per session
        self._budget_day = ""
        self._day_spent = False
        self._usage_tasks: set[asyncio.Task[None]] = set()

    # -- what a VisitorLink needs (kiosk.link.Host) -------------------------------

    @property
    def settings_realtime(self) -> RealtimeSettings:
        """Realtime connection settings."""
        return self.p.settings.realtime

    @property
    def api_key(self) -> SecretStr | None:
        """The OpenAI API key."""
        return self.p.settings.secrets.openai_api_key

    @property
    def speaker(self) -> Speaker:
        """The speaker port."""
        return self.p.speaker

    @property
    def tools(self) -> ToolRegistry:
        """The tool registry."""
        return self.p.tools

    @property
    def trace(self) -> TraceWriter | None:
        """The wire trace, if any."""
        return self.p.trace

    def transcript(self, role: str, text: str) -> None:
        """Forward a transcript line to the observer."""
        self.p.observer.transcript(role, text)

    def tool_ran(self, name: str, arguments: str, output: str) -> None:
        """A tool ran: a saved lead may notify its loan officer; the outbox is drained at once."""
        if name == "saveLead":
            self._after_save(output)
        if name in ("saveLead", "scheduleCall") and self.p.syncer is not None:
            self.p.syncer.kick()
        self.p.observer.tool(name, arguments, output)

    def _after_save(self, output: str) -> None:
        try:
            lead_id = json.loads(output).get("leadId")
        except (json.JSONDecodeError, AttributeError):
            return
        if not isinstance(lead_id, str):
            return  # saveLead refused (no consent, bad e-mail): nothing was stored
        try:
            queue_officer_email(self.p.store, lead_id, self.p.settings.notify, self.p.settings.branch)
        except (ValueError, StoreError) as exc:
            log.error("loan-officer e-mail not queued: %s", exc, extra=event("email_error", lead_id=lead_id))

    def is_quiet(self) -> bool:
        """Nobody speaks: listening, with the speaker idle."""
        return self.machine.state is cv.State.LISTENING

    def usage_changed(self, session_id: str, total: rs.Usage) -> None:
        """Record the session's usage and apply the cost guards (the write runs off the loop)."""
        task = asyncio.get_running_loop().create_task(self._record_usage(session_id, total), name="usage")
        self._usage_tasks.add(task)
        task.add_done_callback(self._usage_tasks.discard)

    async def _record_usage(self, session_id: str, total: rs.Usage) -> None:
        cost = budget.cost_usd(total, self.p.settings.cost)
        day = self.p.today()
        store = self.p.store

        def write() -> tuple[int, float]:
            # A durable write (synchronous=FULL) can take tens of ms on an SD card: never on the loop.
            store.record_usage(session_id, day, budget.token_counts(total), cost)
            return store.usage_for_day(day)

        try:
            day_tokens, day_cost = await asyncio.to_thread(write)
        except StoreError as exc:
            # Budgets must not take the conversation down; the next response tries again.
            log.error("usage not recorded: %s", exc, extra=event("store_error"))
            return
        verdict = budget.check(
            total.input_tokens + total.output_tokens, cost, day_tokens, day_cost, self.p.settings.cost
        )
        if verdict.session_spent and self._link is not None and self._link.session_id == session_id:
            log.warning(
                "session budget spent (%d tokens, $%.2f)",
                total.input_tokens + total.output_tokens,
                cost,
                extra=event("budget_session", session=session_id, cost_usd=round(cost, 4)),
            )
            self.submit(cv.BudgetSpent(daily=False))
        self._daily_verdict(day, verdict.daily_spent, day_tokens, day_cost)

    def _daily_verdict(self, day: str, spent: bool, day_tokens: int, day_cost: float) -> None:
        if spent and not (self._day_spent and self._budget_day == day):
            log.warning(
                "daily budget spent (%d tokens, $%.2f): new sessions refused until tomorrow",
                day_tokens,
                day_cost,
                extra=event("budget_daily", day=day, tokens=day_tokens, cost_usd=round(day_cost, 2)),
            )
            self.submit(cv.BudgetSpent(daily=True))
        elif not spent and self._day_spent:
            log.info("daily budget available again", extra=event("budget_restored", day=day))
            self.submit(cv.BudgetRestored())
        self._budget_day, self._day_spent = day, spent

    def _check_day(self) -> None:
        """At start-up and periodically: is today's budget (still) spent?"""
        day = self.p.today()
        try:
            tokens, cost = self.p.store.usage_for_day(day)
        except StoreError as exc:
            log.error("usage not readable: %s", exc, extra=event("store_error"))
            return
        self._daily_verdict(day, budget.check(0, 0.0, tokens, cost, self.p.settings.cost).daily_spent, tokens, cost)

    # -- inputs from anywhere -------------------------------------------------------

    def submit(self, inp: cv.Input) -> None:
        """Queue an input for the state machine (event-loop thread only)."""
        self._inputs.put_nowait(inp)

    def submit_threadsafe(self, inp: cv.Input) -> None:
        """Queue an input from a device thread (gpiozero, PortAudio)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._inputs.put_nowait, inp)

    @property
    def link(self) -> VisitorLink | None:
        """The current visitor's Realtime link, if a session is on."""
        return self._link

    @property
    def state(self) -> cv.State:
        """The state machine's state."""
        return self.machine.state

    async def wait_for_standby(self, limit_s: float) -> None:
        """Before a press that starts a session: let the warm standby's attempt finish (as a
        visitor walking up would), so the press takes it. Returns at once without one."""
        if self.standby is not None and self.machine.state is cv.State.IDLE:
            async with asyncio.timeout(limit_s):
                await self.standby.settled.wait()

    async def wait_state(self, states: set[cv.State], *, limit_s: float) -> None:
        """Wait (at most ``limit_s``) until the state is one of ``states``."""
        async with asyncio.timeout(limit_s), self._changed:
            await self._changed.wait_for(lambda: self.machine.state in states)

    async def state_changed(self) -> None:
        """Return after the next input has been handled."""
        async with self._changed:
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
                self._check_day()
                background = [
                    tg.create_task(self._mic_pump(), name="mic-pump"),
                    tg.create_task(self._machine_loop(), name="machine"),
                    tg.create_task(self._day_watch(), name="day-watch"),
                ]
                if self.p.syncer is not None:
                    background.append(tg.create_task(self.p.syncer.run(), name="sync"))
                if self.p.settings.realtime.warm_standby:
                    self.standby = self._new_standby()
                    background.append(tg.create_task(self.standby.run(), name="standby"))
                if ready is not None:
                    ready()
                await stop.wait()
                self._execute(self.machine.handle(cv.Shutdown(), self._loop.time()))
                for task in background:
                    task.cancel()
                if self._link is not None:
                    self._link.task.cancel()
        finally:
            self._tg = None
            await self.p.mic.close()
            await self.p.speaker.close()
            self.p.lights.close()

    def _new_standby(self) -> Standby:
        r = self.p.settings.realtime

        def restored() -> None:
            # A connection came up: if the kiosk was offline, it is back.
            self.submit(cv.NetworkRestored())

        async def open_connection() -> RealtimeConnection:
            return await RealtimeConnection.open(
                r.url,
                r.model,
                self.api_key,
                connect_timeout=r.connect_timeout_s,
                ping_interval=r.ping_interval_s,
                trace=self.p.trace,
            )

        return Standby(
            open_connection,
            self.config,
            max_age_s=r.recycle_after_s,
            backoff_base_s=r.backoff_base_s,
            backoff_cap_s=r.backoff_cap_s,
            on_ready=restored,
            on_fatal=lambda reason: self.submit(cv.Fatal(reason)),
        )

    async def _day_watch(self) -> None:
        # A refused kiosk comes back at the start of the next (local) day.
        while True:
            await asyncio.sleep(60)
            self._check_day()

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
            async with self._changed:
                self._changed.notify_all()

    def _on_playing(self, playing: bool) -> None:
        assert self._loop is not None
        self.echo.playback(playing, self._mic_s)
        if playing and self._pressed_at is not None:
            ms = (self._loop.time() - self._pressed_at) * 1000
            self._pressed_at = None
            self.first_audio_ms.append(ms)
            log.info(
                "first assistant audio %.0f ms after the press",
                ms,
                extra=event("first_audio", ms=round(ms), warm=self._link is not None and self._link.was_warm),
            )
        self.submit(cv.AssistantAudio(playing))
        self.p.observer.playing(playing)

    async def _mic_pump(self) -> None:
        assert self._loop is not None
        mic, speaker = self.p.mic, self.p.speaker
        while True:
            chunk = await mic.read()
            self.chunks_pumped += 1
            self._mic_s += mic.chunk_ms / 1000
            link = self._link
            if link is None:
                if self.vad.active:
                    self.vad.reset()
                continue
            # The echo policy runs on captured-audio time: echo tails and warm-ups are
            # lengths of audio, and so they stay right when the audio clock is scaled.
            self.echo.reference(speaker.level_dbfs(), self._mic_s)
            out = self.echo.filter(chunk, self._mic_s)
            # The local VAD only lights the 'visitor speaking' LED (on what passed the echo
            # policy, so the assistant's own voice does not light it); the server decides turns.
            voice = self.vad.feed(out)
            if voice is not None:
                self.submit(cv.LocalVoice(voice))
            if link.ready:
                link.send_audio(out)

    # -- commands -----------------------------------------------------------------

    def _execute(self, commands: list[cv.Command]) -> None:
        for c in commands:
            match c:
                case cv.Connect(session_no=n):
                    self._start_link(n)
                case cv.Greet():
                    if self._link is not None:
                        self._link.request_response(GREETING)
                case cv.SayGoodbye(reason=reason):
                    if self._link is not None:
                        # Walked away: the server's own check-in may be under way; cut it short.
                        idle = reason is cv.EndReason.IDLE
                        self._link.request_response(IDLE_GOODBYE if idle else GOODBYE, interrupt=idle)
                case cv.StopPlayback():
                    self.p.speaker.flush()
                case cv.Hangup(reason=reason, duration_s=duration):
                    self._hangup(reason, duration)
                case cv.Wipe():
                    self.ctx.wipe()
                    self.p.speaker.forget()
                case cv.PlayOfflineMessage():
                    self._play_offline()
                case cv.PlayUnavailableMessage():
                    self._play(self.p.unavailable_audio, "unavailable")
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
        assert self._loop is not None
        self._pressed_at = self._loop.time()
        warm = self.standby.take() if self.standby is not None else None
        link = VisitorLink(self, session_id, warm)
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
                    cost_usd=round(budget.cost_usd(usage, self.p.settings.cost), 4),
                ),
            )
        self._pressed_at = None
        if self.standby is not None:
            self.standby.refill()
        self.p.observer.session_ended(reason, duration)

    def _play_offline(self) -> None:
        self._play(self.p.offline_audio, "offline")
        log.warning("Realtime unavailable: offline message played", extra=event("offline"))

    def _play(self, audio: bytes | None, tag: str) -> None:
        if audio:
            self.p.speaker.write(audio, tag)
            self.p.speaker.end_of_stream()


def read_message(path: Path | None) -> bytes | None:
    """A prerecorded message WAV (offline, unavailable), if configured and readable."""
    if path is None:
        return None
    from kiosk.audio.pcm import read_wav

    try:
        return read_wav(path)
    except (OSError, ValueError) as exc:
        log.warning("offline message %s unusable: %s", path, exc)
        return None
