"""The running kiosk: the state machine wired to its adapters in one TaskGroup.

``Kiosk`` wires the pure cores (the kiosk state machine and one Realtime session core per
visit) to the adapters (microphone, speaker, lights, Realtime opener, store, tools). It
owns no protocol logic of its own: it carries out commands and routes effects. It is built
by :mod:`kiosk.runtime.compose` from settings.

Concurrency: everything runs on one event loop. Device threads only hand work over with
``call_soon_threadsafe``. Each visit is one task (``Visit``) with a reader and a single
sender, so client events leave in the order the core queued them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from kiosk import budget
from kiosk import conversation as cv
from kiosk.audio.echo import EchoPolicy
from kiosk.audio.ports import Microphone, Recording, Speaker
from kiosk.audio.vad import LedVad
from kiosk.config import Settings
from kiosk.leads.store import Store
from kiosk.logs import event
from kiosk.panel.ports import Lights
from kiosk.realtime import session as rs
from kiosk.realtime.handshake import Opener
from kiosk.realtime.standby import Standby
from kiosk.runtime.budget_guard import BudgetGuard
from kiosk.runtime.observer import NullObserver, Observer
from kiosk.runtime.visit import Visit
from kiosk.runtime.visit_log import VisitLog
from kiosk.tools import catalog
from kiosk.tools.consent import greeting
from kiosk.tools.registry import ToolContext, ToolRegistry

if TYPE_CHECKING:
    from kiosk.audio.aec import EchoStage
    from kiosk.leads.sync import Syncer  # the daemon's; a kiosk without one never loads the CRM or SMTP clients

log = logging.getLogger(__name__)

GOODBYE = "Our time is up: thank the visitor and say a short goodbye in one sentence."
IDLE_GOODBYE = (
    "The visitor seems to have left: say in one short sentence that you are ending the chat and they can press the "
    "button any time to start again."
)


@dataclass
class Parts:
    """Everything a Kiosk runs with (see :mod:`kiosk.runtime.compose`)."""

    settings: Settings
    store: Store
    tools: ToolRegistry
    opener: Opener  # opens this kiosk's configured Realtime sessions
    mic: Microphone
    speaker: Speaker
    lights: Lights
    offline_audio: Recording | None = None  # read when played: held for the kiosk's life, ~0.35 MB each
    unavailable_audio: Recording | None = None
    syncer: Syncer | None = None  # the outbox consumer (the daemon); None in the demo and most tests
    echo: EchoStage | None = None  # the echo canceller in the microphone's path (echo.mode = "aec")
    observer: Observer = field(default_factory=NullObserver)
    today: Callable[[], str] = field(default=lambda: date.today().isoformat())  # the local day, for budgets


class Kiosk:
    """The running kiosk."""

    def __init__(self, parts: Parts) -> None:
        self.p = parts
        s = parts.settings
        self.machine = cv.Conversation(
            cv.Timing(
                connect_timeout_s=s.session.connect_timeout_s,
                max_visit_s=s.session.max_session_s,
                goodbye_s=s.session.goodbye_s,
                idle_end_s=s.session.idle_end_s,
            )
        )
        # "aec" without a canceller (it could not be loaded) falls back to the level gate.
        mode = "gate" if s.echo.mode == "aec" and parts.echo is None else s.echo.mode
        self.echo = EchoPolicy(mode, s.echo.gate_margin_db, s.echo.warmup_ms / 1000)
        self.vad = LedVad(s.vad.aggressiveness, s.vad.frame_ms, s.vad.hangover_ms)
        self.opener = parts.opener
        self.tool_site = catalog.tool_site(s, parts.store)
        self.scope: ToolContext | None = None  # the current visit's tool scope
        self.budget = BudgetGuard(
            parts.store,
            s.cost,
            budget.Rates.of(s.cost, s.realtime.model, s.realtime.transcription_model),
            today=parts.today,
            submit=self.submit,
            current_visit=lambda: self._visit.visit_id if self._visit is not None else None,
        )
        # The lender's numbers and the link's health, written off the loop like usage.
        self.visits = VisitLog(
            parts.store,
            self.budget.cost_usd,
            today=parts.today,
            clock=lambda: asyncio.get_running_loop().time(),
            link_warn_s=s.fleet.link_warn_min * 60,
        )
        self._inputs: asyncio.Queue[cv.Input] = asyncio.Queue()
        self._visit: Visit | None = None
        self._changed = asyncio.Condition()
        self._tg: asyncio.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.visits_started = 0
        self.chunks_pumped = 0  # progress of the loop's audio path (watchdog probe)
        self._mic_s = 0.0  # seconds of audio captured since start
        self.standby: Standby | None = None
        self._pressed_at: float | None = None
        self.first_audio_ms: list[float] = []  # press to first audible assistant audio, per visit

    # -- what a Visit needs (kiosk.runtime.visit.Host) ------------------------

    @property
    def speaker(self) -> Speaker:
        """The speaker port."""
        return self.p.speaker

    @property
    def tools(self) -> ToolRegistry:
        """The tool registry."""
        return self.p.tools

    def transcript(self, role: str, text: str) -> None:
        """Forward a transcript line to the visit's record and the observer."""
        self.visits.transcript(role, text)
        self.p.observer.transcript(role, text)

    def tool_ran(self, name: str, arguments: str, output: str) -> None:
        """A tool ran: whatever it queued in the outbox (a lead, e-mails) is delivered at once.

        Every tool run kicks the syncer, so the shell need not know which tools write what; a
        pass with nothing due is two indexed SELECTs in a worker thread, and a kick never
        shortens a retry pause.
        """
        if self.p.syncer is not None:
            self.p.syncer.kick()
        self.visits.tool(name, output)
        self.p.observer.tool(name, arguments, output)

    def is_quiet(self) -> bool:
        """Nobody speaks: listening, with the speaker idle."""
        return self.machine.state is cv.State.LISTENING

    def refused(self, reason: str) -> None:
        """The service refused the kiosk (no quota, a refused configuration): the standby stops
        connecting too, and the lights show ERROR until a restart."""
        if self.standby is not None:
            self.standby.stop()
        self.submit(cv.Fatal(reason))

    def usage_changed(self, visit_id: str, total: rs.Usage) -> None:
        """Record the visit's usage and apply the cost guards (the write runs off the loop)."""
        assert self._tg is not None
        self._tg.create_task(self.budget.record(visit_id, total), name="usage")

    # -- inputs from anywhere -------------------------------------------------------

    def submit(self, inp: cv.Input) -> None:
        """Queue an input for the state machine (event-loop thread only)."""
        self._inputs.put_nowait(inp)

    def submit_threadsafe(self, inp: cv.Input) -> None:
        """Queue an input from a device thread (gpiozero, PortAudio)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._inputs.put_nowait, inp)

    @property
    def visit(self) -> Visit | None:
        """The current visit, if there is one."""
        return self._visit

    @property
    def state(self) -> cv.State:
        """The state machine's state."""
        return self.machine.state

    async def wait_for_standby(self, limit_s: float) -> None:
        """Before a press that starts a visit: let the warm standby's attempt finish (as a
        visitor walking up would), so the press takes it. Returns at once without one."""
        if self.standby is not None and self.machine.state is cv.State.IDLE:
            async with asyncio.timeout(limit_s):
                await self.standby.settled.wait()

    async def wait_state(self, states: set[cv.State], *, limit_s: float | None) -> None:
        """Wait (at most ``limit_s``; None: as long as it takes) until the state is one of ``states``."""
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
                self.budget.check_day()
                background = [
                    tg.create_task(self._mic_pump(), name="mic-pump"),
                    tg.create_task(self._machine_loop(), name="machine"),
                    tg.create_task(self.budget.watch_days(), name="day-watch"),
                    tg.create_task(self.visits.run(), name="visit-log"),
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
                if self._visit is not None:
                    self._visit.task.cancel()
        finally:
            self._tg = None
            await self.visits.close()
            await self.p.mic.close()
            await self.p.speaker.close()
            self.p.lights.close()

    def _new_standby(self) -> Standby:
        r = self.p.settings.realtime

        def restored() -> None:
            # A connection came up: if the kiosk was offline, it is back.
            self.submit(cv.NetworkRestored())

        return Standby(
            self.opener,
            max_age_s=r.recycle_after_s,
            backoff_base_s=r.backoff_base_s,
            backoff_cap_s=r.backoff_cap_s,
            on_ready=restored,
            on_failed=lambda reason: self.visits.link_failed(),
            on_fatal=lambda reason: self.submit(cv.Fatal(reason)),
        )

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
            self.visits.handled(inp, self.machine.state)
            async with self._changed:
                self._changed.notify_all()

    def _on_playing(self, playing: bool) -> None:
        assert self._loop is not None
        self.echo.playback(playing, self._mic_s)
        if playing and self._pressed_at is not None:
            ms = (self._loop.time() - self._pressed_at) * 1000
            self._pressed_at = None
            self.first_audio_ms.append(ms)
            visit = self._visit
            warm = visit is not None and visit.was_warm
            self.visits.first_audio(ms, warm)
            log.info(
                "first assistant audio %.0f ms after the press",
                ms,
                extra=event("first_audio", session=visit.visit_id if visit else None, ms=round(ms), warm=warm),
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
            visit = self._visit
            if visit is None:
                if self.vad.active:
                    self.vad.reset()
                continue
            # The echo policy runs on captured-audio time: echo tails and warm-ups are
            # lengths of audio, and so they stay right when the audio clock is scaled.
            if self.echo.uses_level:
                self.echo.reference(speaker.level_dbfs(), self._mic_s)
            out = self.echo.filter(chunk, self._mic_s)
            # The local VAD only lights the LED (on what passed the echo policy); the server decides turns.
            voice = self.vad.feed(out)
            if voice is not None:
                self.submit(cv.LocalVoice(voice))
            if visit.ready:
                visit.send_audio(out)

    # -- commands -----------------------------------------------------------------

    def _execute(self, commands: list[cv.Command]) -> None:
        for c in commands:
            match c:
                case cv.Connect(visit_no=n, visit_id=visit_id):
                    self._start_visit(n, visit_id)
                case cv.Greet():
                    if self._visit is not None:
                        self._visit.request_response(greeting(self.p.settings))
                case cv.SayGoodbye(reason=reason):
                    if self._visit is not None:
                        # Walked away: the server's own check-in may be under way; cut it short.
                        idle = reason is cv.EndReason.IDLE
                        self._visit.request_response(IDLE_GOODBYE if idle else GOODBYE, interrupt=idle)
                case cv.StopPlayback():
                    self.p.speaker.flush()
                case cv.Hangup(reason=reason, duration_s=duration):
                    self._hangup(reason, duration)
                case cv.Wipe():
                    self._forget_scope()
                    self.p.speaker.forget()
                case cv.PlayOfflineMessage(visit_id=visit_id):
                    self._play_offline(visit_id)
                case cv.PlayUnavailableMessage():
                    self._play(self.p.unavailable_audio, "unavailable")
                case cv.Refused(visit_id=visit_id, reason=reason):
                    self.visits.refused(visit_id, reason)
                case cv.Lights(pattern=pattern):
                    self.p.lights.show(pattern)

    def _start_visit(self, visit_no: int, visit_id: str) -> None:
        assert self._tg is not None and self._loop is not None
        self._forget_scope()
        self.scope = self.tool_site.visit(visit_id)
        self.visits_started += 1
        log.info("visit %s started", visit_no, extra=event("session_start", session=visit_id, session_no=visit_no))
        self.visits.started(visit_id)
        self._pressed_at = self._loop.time()
        warm = self.standby.take() if self.standby is not None else None
        visit = Visit(self, visit_id, self.scope, warm)
        visit.task = self._tg.create_task(visit.run(), name=f"visit-{visit_no}")
        self._visit = visit

    def _forget_scope(self) -> None:
        """Drop the last visit's tool scope; a tool still finishing for it writes into the dropped one."""
        if self.scope is not None:
            self.scope.close()
            self.scope = None

    def _hangup(self, reason: cv.EndReason, duration: float | None) -> None:
        visit, self._visit = self._visit, None
        if visit is not None:
            visit.task.cancel()
            usage = visit.usage
            log.info(
                "visit ended (%s) after %.1f s",
                reason.value,
                duration or 0.0,
                extra=event(
                    "session_end",
                    session=visit.visit_id,
                    reason=reason.value,
                    duration_s=round(duration or 0.0, 1),
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_usd=round(self.budget.cost_usd(usage), 4),
                ),
            )
            self.visits.ended(visit.visit_id, reason, duration, usage)
        self._pressed_at = None
        if self.standby is not None:
            self.standby.refill()
        self.p.observer.visit_ended(reason, duration)

    def _play_offline(self, visit_id: str) -> None:
        self._play(self.p.offline_audio, "offline")
        log.warning("Realtime unavailable: offline message played", extra=event("offline", session=visit_id or None))

    def _play(self, message: Recording | None, tag: str) -> None:
        if audio := message.pcm() if message is not None else None:
            self.p.speaker.write(audio, tag)
            self.p.speaker.end_of_stream()
