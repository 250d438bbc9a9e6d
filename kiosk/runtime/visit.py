"""One visit: the visitor's Realtime session from press to hang-up, and its tool scope.

A visit takes the warm standby's session or opens its own (``kiosk.realtime.handshake``),
reads and sends, runs tools in the visit's own scope, reconnects and recycles, and routes
the session core's effects to the host (the kiosk). Policy in one place:

* the first connect failing is reported at once (the visitor hears the offline message
  instead of waiting); a drop mid-visit is retried with exponential backoff and full
  jitter until the state machine's reconnect deadline gives up;
* fatal refusals (bad key, no quota, a refused configuration) are logged once at ERROR,
  stop the warm standby and are never retried;
* a response that failed for a rate limit or a server error is logged once at ERROR and
  asked for again after a back-off, with an apology; a second failure ends the visit
  with the offline message;
* ``session_expired`` and the proactive recycle (before the service's 60-minute limit, at
  a quiet moment) open a fresh connection and replay the instructions, tools and a
  condensed transcript of what was heard, without the visitor noticing; a connection
  that expires soon after it opened waits a back-off first (no reconnect storm);
* a tool that stores the visitor's words (saveLead) first waits, briefly, for the
  transcripts of every committed visitor item: transcription runs beside the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Protocol

from kiosk import conversation as cv
from kiosk.audio.ports import Speaker
from kiosk.errors import FatalRealtimeError, RealtimeError, StoreError
from kiosk.logs import event
from kiosk.realtime import session as rs
from kiosk.realtime.connection import RealtimeConnection, Reconnector
from kiosk.realtime.handshake import Opened, Opener
from kiosk.realtime.transcripts import PENDING_MARK
from kiosk.tools.registry import ToolContext, ToolRegistry

log = logging.getLogger(__name__)
EARLY_EXPIRIES = 3  # sessions in a row that expired soon after opening: the service is not usable


class _RecycleNow(Exception):
    """Internal: replace the connection now (expired, or old and quiet)."""


def _stop_if_cancelled() -> None:
    """A retry loop must end when its task was cancelled, even if a library lost the CancelledError."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Host(Protocol):
    """What a visit needs from the kiosk."""

    opener: Opener

    @property
    def speaker(self) -> Speaker:
        """Where assistant audio goes."""

    @property
    def tools(self) -> ToolRegistry:
        """The tools."""

    def submit(self, inp: cv.Input) -> None:
        """Queue an input for the state machine."""

    def transcript(self, role: str, text: str) -> None:
        """A finished transcript line."""

    def tool_ran(self, name: str, arguments: str, output: str) -> None:
        """A tool call finished."""

    def is_quiet(self) -> bool:
        """Nobody is speaking (a moment to recycle the connection)."""

    def usage_changed(self, visit_id: str, total: rs.Usage) -> None:
        """The session's cumulative token usage grew (a response finished)."""

    def refused(self, reason: str) -> None:
        """The service refused the kiosk for good: stop connecting (the standby too)."""

    async def state_changed(self) -> None:
        """Return at the next state change."""


class Visit:
    """One visit's Realtime side; ``run`` is its task."""

    def __init__(self, host: Host, visit_id: str, scope: ToolContext, warm: Opened | None = None) -> None:
        self.h = host
        self.visit_id = visit_id
        self.scope = scope  # this visit's own tool scope: made for it, dropped with it
        self.warm = warm  # a configured connection from the standby: no handshake to wait for
        self.was_warm = warm is not None
        self.task: asyncio.Task[None]
        self.core: rs.RealtimeSession | None = None
        self.ready = False
        self.usage = rs.Usage()
        self.recycles = 0
        self.reconnects = 0
        self._kick = asyncio.Event()
        self._last_frame = 0.0  # loop time of the latest server frame (the stall watchdog)
        self._transcribed = asyncio.Event()  # the transcript book moved
        self._book_version = -1
        self._children: set[asyncio.Task[None]] = set()

    def send_audio(self, pcm: bytes) -> None:
        """Queue visitor audio (dropped until the session is ready)."""
        if self.core is not None and self.ready:
            self.core.append_audio(pcm)
            self._kick.set()

    def request_response(self, extra: str, *, interrupt: bool = False) -> None:
        """Ask the assistant to speak (greeting, goodbye) with an extra line of instructions;
        ``interrupt`` cuts off what it is saying, flushed and truncated like a barge-in."""
        core = self.core
        if core is not None:
            if interrupt:
                for eff in core.interrupt():
                    self._effect(eff, core)
            core.request_response(extra)
            self._kick.set()

    async def run(self) -> None:
        """Connect and serve until cancelled (hangup) or hopeless; never takes the daemon down."""
        try:
            await self._run()
        except FatalRealtimeError as exc:
            log.error(
                "Realtime refused the kiosk: %s (no retry until restarted)",
                exc,
                extra=event("realtime_fatal", session=self.visit_id),
            )
            self.h.refused(str(exc))
        except Exception:
            log.exception("visit failed", extra=event("session_error", session=self.visit_id))
            self.h.submit(cv.ReconnectFailed("internal error") if self.ready else cv.ConnectFailed("internal error"))

    async def _run(self) -> None:
        s = self.h.opener.settings
        loop = asyncio.get_running_loop()
        recon = Reconnector(s.backoff_base_s, s.backoff_cap_s, s.stable_after_s)
        previous: rs.RealtimeSession | None = None
        while True:
            opened, self.warm = self.warm, None
            if opened is None:
                # A visit without a warm standby, a reconnect, or a recycle replaying the conversation.
                opened = await self._connect(previous, recon)
                if opened is None:
                    return
            conn, core = opened.conn, opened.core
            recon.connected(opened.opened_at)
            self.core = core
            try:
                self._effect(rs.Ready(), core)
                await self._serve(conn, core, opened.opened_at)
            except _RecycleNow:
                self.recycles += 1
                log.info(
                    "Realtime connection recycled; conversation replayed",
                    extra=event("recycled", session=self.visit_id),
                )
                self.ready = False
                previous = core
                # Invisible after a long-lived connection; a service that expires sessions
                # at once gets the same back-off as a failure, never a reconnect storm, and
                # after a few such sessions the visit ends offline: a visitor must not stand
                # at a kiosk that listens but can never answer.
                delay = recon.recycle_delay(loop.time())
                if recon.failures >= EARLY_EXPIRIES:
                    log.warning("the service ended %d sessions right after they opened; the visit ends",
                                recon.failures, extra=event("connection_lost", session=self.visit_id))  # fmt: skip
                    self.h.submit(cv.ReconnectFailed("every session expires at once"))
                    return
                await asyncio.sleep(delay)
            except FatalRealtimeError:
                raise
            except RealtimeError as exc:
                _stop_if_cancelled()
                self.reconnects += 1
                log.warning(
                    "Realtime connection lost: %s", exc, extra=event("connection_lost", session=self.visit_id)
                )
                self.ready = False
                self.h.submit(cv.ConnectionLost(str(exc)))
                previous = core
                await asyncio.sleep(recon.next_delay(loop.time()))
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _connect(self, previous: rs.RealtimeSession | None, recon: Reconnector) -> Opened | None:
        """A configured session, retried with backoff; None when the visitor's first attempt failed."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await self.h.opener.open(id_prefix=f"k{self.visit_id[:6]}", replay=previous)
            except RealtimeError as exc:
                if isinstance(exc, FatalRealtimeError):
                    raise
                _stop_if_cancelled()
                if previous is None:
                    log.warning("connect failed: %s", exc, extra=event("connect_failed", session=self.visit_id))
                    self.h.submit(cv.ConnectFailed(str(exc)))
                    return None
                delay = recon.next_delay(loop.time())
                log.info(
                    "reconnect failed (%s); next try in %.1f s",
                    exc,
                    delay,
                    extra=event("reconnect_wait", session=self.visit_id),
                )
                await asyncio.sleep(delay)

    async def _serve(self, conn: RealtimeConnection, core: rs.RealtimeSession, opened: float) -> None:
        """Read and send until the connection fails or must be recycled."""
        sender = asyncio.create_task(self._sender(conn, core))
        reader = asyncio.create_task(self._reader(conn, core))
        recycler = asyncio.create_task(self._recycle_when_due(core, opened))
        watchdog = asyncio.create_task(self._stall_watch(core))
        tasks = (reader, recycler, watchdog, sender)  # in the order their outcome matters
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if sender in done and reader not in done:
                # A failed send only says the socket closed; the frames still buffered for
                # the reader may say why (an invalid_api_key error), so let it finish them.
                await asyncio.wait({reader}, timeout=2.0)
            for t in tasks:
                if t.done():
                    t.result()
        finally:
            # Tool runs belong to this connection: their outputs could not be delivered.
            pending = [*tasks, *self._children]
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self._children.clear()

    async def _recycle_when_due(self, core: rs.RealtimeSession, opened: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, opened + self.h.opener.settings.recycle_after_s - loop.time()))
        while not (core.quiet and self.h.is_quiet()):
            await self.h.state_changed()
        raise _RecycleNow

    async def _stall_watch(self, core: rs.RealtimeSession) -> None:
        """A response that stays active with no server event for ``response_stall_s`` ends the
        connection like a drop: without this, a ``response.created`` that never finishes would
        hold the visit for ever (nothing else may be asked while a response is active)."""
        loop = asyncio.get_running_loop()
        limit = self.h.opener.settings.response_stall_s
        self._last_frame = loop.time()
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            silent = loop.time() - self._last_frame
            if core.active_response is not None and silent >= limit:
                raise RealtimeError(f"response {core.active_response} stalled: no server event for {silent:.0f} s")

    async def _sender(self, conn: RealtimeConnection, core: rs.RealtimeSession) -> None:
        await conn.pump(core.drain, self._kick)

    async def _reader(self, conn: RealtimeConnection, core: rs.RealtimeSession) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await conn.recv()
            self._last_frame = loop.time()
            for eff in core.receive(frame, loop.time()):
                self._effect(eff, core)
            self._sync_transcript(core)
            self._kick.set()

    def _sync_transcript(self, core: rs.RealtimeSession) -> None:
        """The visit's tools see the conversation as the core's book has it: in order, cut
        where the visitor interrupted, late visitor lines in their place."""
        book = core.transcripts
        if book.version != self._book_version:
            self._book_version = book.version
            if not self.scope.closed:
                self.scope.transcript = book.lines()
                self.scope.items = book.items()
                self._settle_evidence()
            self._transcribed.set()

    def _settle_evidence(self) -> None:
        """Late visitor transcripts complete the consent evidence of a lead saved before they landed."""
        try:
            n = self.scope.settle_late_words(PENDING_MARK)
        except StoreError as exc:
            log.error("late consent words not stored: %s", exc, extra=event("evidence_error", session=self.visit_id))
            return
        if n:
            log.info("consent evidence completed with %d late transcript(s)", n,
                     extra=event("evidence_completed", session=self.visit_id, items=n))  # fmt: skip

    def _effect(self, eff: rs.Effect, core: rs.RealtimeSession) -> None:
        h = self.h
        match eff:
            case rs.Ready():
                self.ready = True
                h.submit(cv.SessionReady())
            case rs.PlayAudio(item_id=item, pcm=pcm):
                h.speaker.write(pcm, item)
            case rs.FlushPlayback():
                core.playback_flushed(h.speaker.flush())
                self._sync_transcript(core)
            case rs.VisitorSpeaking(speaking=speaking):
                h.submit(cv.VisitorSpeech(speaking))
            case rs.Transcript(role=role, text=text):
                h.transcript(role, text)
            case rs.RunTools(calls=calls):
                self._children.add(asyncio.create_task(self._run_tools(calls, core)))
            case rs.ResponseFinished(status=status, usage=usage):
                self.usage = self.usage + usage
                h.speaker.end_of_stream()
                h.usage_changed(self.visit_id, self.usage)
                log.debug("response %s %s", eff.response_id, status)
            case rs.UsageReported(usage=usage):
                self.usage = self.usage + usage
                h.usage_changed(self.visit_id, self.usage)
            case rs.ResponseFailed():
                self._response_failed(eff, core)
            case rs.IdleTimeout():
                log.info("visitor silent; assistant checks in", extra=event("idle_timeout", session=self.visit_id))
                h.submit(cv.VisitorIdle())
            case rs.Recycle():
                raise _RecycleNow
            case rs.FatalError():
                raise FatalRealtimeError(eff.describe())

    def _response_failed(self, eff: rs.ResponseFailed, core: rs.RealtimeSession) -> None:
        s = self.h.opener.settings
        fields = event("response_failed", session=self.visit_id, code=eff.code)
        if not eff.retry:
            log.error("Realtime response failed again (%s): the visit ends", eff.code, extra=fields)
            self.h.submit(cv.ReconnectFailed(f"the service failed twice: {eff.code}"))
            return
        delay = s.backoff_base_s * (1 + random.random())  # jitter: kiosks that failed together retry apart
        log.warning("Realtime response failed (%s: %s); asking again in %.1f s", eff.code, eff.message, delay,
                  extra=fields)  # fmt: skip

        async def retry() -> None:
            await asyncio.sleep(delay)
            core.retry_response()
            self._kick.set()

        self._children.add(asyncio.create_task(retry()))

    async def _await_transcripts(self, core: rs.RealtimeSession) -> None:
        """Until every committed visitor item is transcribed (or failed), at most ``evidence_wait_s``."""
        try:
            async with asyncio.timeout(self.h.tools.evidence_wait_s):
                while core.transcripts.pending_visitor():
                    self._transcribed.clear()
                    await self._transcribed.wait()
        except TimeoutError:
            wait = self.h.tools.evidence_wait_s
            fields = event("evidence_incomplete", session=self.visit_id)
            log.warning("visitor words still untranscribed after %.1f s: evidence marks them", wait, extra=fields)

    async def _run_tools(self, calls: tuple[rs.ToolCall, ...], core: rs.RealtimeSession) -> None:
        if self.h.tools.quotes_visitor([c.name for c in calls]):
            await self._await_transcripts(core)
            self._sync_transcript(core)
        results = []
        for call in calls:
            output = await self.h.tools.call(call.name, call.arguments, self.scope)
            self.h.tool_ran(call.name, call.arguments, output)
            log.info(
                "tool %s ran",
                call.name,
                extra=event("tool", tool=call.name, session=self.visit_id, ok=not output.startswith('{"error"')),
            )
            results.append((call.call_id, output))
        core.tool_results(results)
        self._kick.set()
