"""The Realtime session core: sans-I/O, time passed in.

Feed it server frames with :meth:`RealtimeSession.receive`; it returns *effects* for the
rest of the kiosk (play this audio, flush the speaker, run these tools, the session is
ready, ...) and queues client events, which the connection drains with :meth:`drain`.
It owns the protocol rules that voice kiosks get wrong:

* under server VAD it never sends ``input_audio_buffer.commit`` nor a ``response.create``
  after ``committed`` (the server answers by itself);
* ``response.create`` is only ever sent while no response is active, carries the session's
  instructions with any extra line (never instead of them), and an error naming it clears it;
* on ``speech_started`` (and for an interrupting goodbye) it asks for an immediate playback
  flush, then truncates each assistant item to what the speaker reports as *played*,
  clamped to the audio received; an item of which nothing was heard is deleted instead;
  audio of interrupted items that is still in flight is dropped;
* tool calls run only once their response is ``completed``; every call gets one
  ``function_call_output`` and the batch gets exactly one ``response.create``;
* failures are classified by code (:mod:`kiosk.realtime.failures`), never by message;
* no frame can raise out of :meth:`receive`: broken ones are logged (rate-limited) and skipped.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from kiosk.logs import event
from kiosk.realtime import events as ev
from kiosk.realtime import failures as fl
from kiosk.realtime.effects import (
    CONFIG_REJECTED,
    Effect,
    FatalError,
    FlushPlayback,
    IdleTimeout,
    PlayAudio,
    Ready,
    Recycle,
    ResponseFailed,
    ResponseFinished,
    RunTools,
    ToolCall,
    Transcript,
    UsageReported,
    VisitorSpeaking,
)
from kiosk.realtime.frames import LogLimiter, screen
from kiosk.realtime.playout import Playout
from kiosk.realtime.responses import REQUESTED, OpenResponse, Responses, obj, put
from kiosk.realtime.responses import text as text_at
from kiosk.realtime.sessionconfig import RETRY_LINE, SessionConfig
from kiosk.realtime.transcripts import FAILED_MARK, TranscriptBook
from kiosk.realtime.usage import Usage

log = logging.getLogger(__name__)

# The effects are part of this core's interface: ``rs.Ready``, ``rs.Usage``, ...
__all__ = [
    "Effect", "FatalError", "FlushPlayback", "IdleTimeout", "PlayAudio", "Ready", "RealtimeSession", "Recycle",
    "ResponseFailed", "ResponseFinished", "RunTools", "SessionConfig", "ToolCall", "Transcript", "Usage",
    "UsageReported", "VisitorSpeaking",
]  # fmt: skip

class RealtimeSession:
    """One Realtime conversation's protocol state. Not thread-safe; owned by one task."""

    def __init__(self, config: SessionConfig, id_prefix: str = "kiosk") -> None:
        self.config = config
        self._ids = (f"{id_prefix}_{n}" for n in itertools.count(1))
        self._out: list[ev.Event] = []
        self._ready = False
        self.responses = Responses()
        self.playout = Playout()
        self._awaiting: dict[str, None] = {}
        self._want_response = False
        self._pending_extra: str | None = None
        self._retries_left = 1  # one retry per failed response, restored by a completed one
        self._retry_extra: str | None = None
        self._retry_due = False
        self._sent_types: OrderedDict[str, str] = OrderedDict()
        self._quiet_log = LogLimiter()
        self.usage = Usage()
        self.transcripts = TranscriptBook()

    @property
    def active_response(self) -> str | None:
        """The active response's id (``<requested>`` while ours is on its way), or None."""
        return self.responses.active

    # -- outgoing -------------------------------------------------------------------

    def _send(self, event: ev.Event) -> None:
        eid = event.get("event_id")
        if isinstance(eid, str):
            put(self._sent_types, eid, str(event["type"]))
        self._out.append(event)

    def _eid(self) -> str:
        return next(self._ids)

    def drain(self) -> list[ev.Event]:
        """Take the queued client events, oldest first."""
        out, self._out = self._out, []
        return out

    def start(self) -> None:
        """Queue the full ``session.update``."""
        self._send(ev.session_update(self.config.session_object(), self._eid()))

    def append_audio(self, pcm: bytes) -> None:
        """Queue visitor audio (PCM16 24 kHz mono). Never a commit: server VAD commits."""
        if pcm:
            self._out.append(ev.audio_append(pcm))

    def request_response(self, extra: str | None = None) -> bool:
        """Ask for a response (greeting, goodbye) with ``extra`` instructions; True if sent now.

        While a response is active the request waits for its ``response.done``; the extra
        line is added to the session's instructions, never sent instead of them.
        """
        if self.active_response is not None:
            log.debug("response.create deferred: %s is active", self.active_response)
            self._want_response = True
            self._pending_extra = extra or self._pending_extra
            return False
        eid = self._eid()
        self._send(ev.response_create(eid, self.config.response_instructions(extra)))
        self.responses.asked(eid, extra)
        return True

    def interrupt(self) -> list[Effect]:
        """Cut the assistant off now (a goodbye that must not wait): cancel, then flush and
        truncate exactly like a barge-in."""
        self.cancel_active()
        return self._barge_in()

    def retry_response(self) -> None:
        """After a failed response and its back-off: ask again, with an apology."""
        self._retry_due = False
        extra = "\n\n".join(x for x in (self._retry_extra, RETRY_LINE) if x)
        self.request_response(extra)

    def tool_results(self, results: Iterable[tuple[str, str]]) -> None:
        """Hand in ``(call_id, output)`` pairs; after the last awaited one, ask for a response."""
        for call_id, output in results:
            if call_id not in self._awaiting:
                log.warning("tool output for unknown call %s dropped", call_id)
                continue
            del self._awaiting[call_id]
            self._send(ev.function_call_output(self._eid(), call_id, output))
        if not self._awaiting:
            self._want_response = True
            self._maybe_respond()

    def playback_flushed(self, played_ms: Mapping[str, float]) -> None:
        """After a flush: tell the server what the visitor actually heard, and cut our transcript.

        ``played_ms`` maps each assistant item that still had audio in the speaker to the
        milliseconds of it that were played. Items not in the map were heard in full.
        An item with 0 ms played is *deleted* rather than truncated to 0: the visitor heard
        none of it, and the server refuses a truncation to 0 ms.
        """
        for item_id, end, received_ms in self.playout.flushed(played_ms):
            if end == 0:
                self._send(ev.item_delete(self._eid(), item_id))
                self.transcripts.deleted(item_id)
            else:
                self._send(ev.item_truncate(self._eid(), item_id, end))
                self.transcripts.truncated(item_id, end, received_ms)

    def cancel_active(self) -> None:
        """Cancel the active response (only needed when the server does not interrupt)."""
        rid = self.active_response
        if rid is not None and rid != REQUESTED:
            self._send(ev.response_cancel(self._eid(), rid))

    def _maybe_respond(self) -> None:
        if self._want_response and self.active_response is None:
            self._want_response = False
            extra, self._pending_extra = self._pending_extra, None
            self.request_response(extra)

    # -- incoming -------------------------------------------------------------------

    def _skip(self, key: str, why: str, now: float, level: int = logging.WARNING, what: str = "malformed") -> None:
        """Log a skipped frame (or part of one): each ``key`` at most every 10 s, with a count."""
        held = self._quiet_log.allow(key, now)
        if held is not None:
            more = f" ({held} more since)" if held else ""
            log.log(level, "%s server event skipped: %s%s", what, why, more, extra=event("malformed_event"))

    def receive(self, text: str | bytes, now: float) -> list[Effect]:
        """Handle one server frame at monotonic time ``now``; return effects in order.

        Never raises: broken frames are logged (each reason at most every 10 s) and
        skipped; unknown types are skipped at DEBUG.
        """
        why = screen(text)
        if why is not None:
            self._skip(why.split(" (")[0], why, now)
            return []
        try:
            parsed = ev.parse_server_event(text)
        except ev.MalformedEvent as exc:
            self._skip(str(exc).split(":")[0], str(exc), now)
            return []
        if parsed is None:
            log.debug("unknown server event type skipped")
            return []
        try:
            return self._dispatch(parsed, now)
        except Exception:
            # The last resort: a frame the rules above let through and the handlers choke
            # on. It must not end the visit or the daemon; it is a bug, so it says so.
            if self._quiet_log.allow("handler:" + parsed.type, now) is not None:
                log.exception("server event %s could not be handled", parsed.type, extra=event("event_error"))
            return []

    def _dispatch(self, e: ev.ServerEvent, now: float) -> list[Effect]:
        match e:
            case ev.SessionUpdated():
                if not self._ready:
                    self._ready = True
                    self._maybe_respond()  # a request the last connection never got answered
                    return [Ready()]
            case ev.AudioDelta():
                return self._on_audio(e.item_id, e.pcm(), now)
            case ev.SpeechStarted():
                out: list[Effect] = [VisitorSpeaking(True)]
                if not self.config.settings.interrupt_response:
                    self.cancel_active()
                return out + self._barge_in()
            case ev.SpeechStopped():
                return [VisitorSpeaking(False)]
            case ev.BufferCommitted():
                self.transcripts.expect_visitor(e.item_id)
            case ev.ResponseCreated():
                if not self.responses.created(e.response):
                    self._skip("created", "response.created without a response id", now)
            case ev.FunctionCallArgumentsDone():
                if not self.responses.call(e.response_id, ToolCall(e.call_id, e.name, e.arguments, e.response_id)):
                    self._skip("call", f"tool call of unknown response {e.response_id!r}", now, what="stray")
            case ev.ResponseDone():
                return self._on_response_done(e.response, now)
            case ev.TranscriptDone() if not self.transcripts.knows(e.item_id):
                self._skip("transcript", f"transcript of unknown item {e.item_id!r}", now, what="stray")
            case ev.TranscriptDone():
                text = self.transcripts.assistant(e.item_id, e.transcript, self.playout.received_ms(e.item_id))
                return [Transcript("assistant", text, e.item_id)] if text else []
            case ev.InputTranscriptDone():
                usage = Usage.from_transcription(e.usage)
                self.usage = self.usage + usage
                text = self.transcripts.visitor(e.item_id, e.transcript)
                out = [Transcript("visitor", text, e.item_id)] if text else []
                return [*out, UsageReported(usage)] if usage != Usage() else out
            case ev.InputTranscriptFailed():
                self.transcripts.visitor_failed(e.item_id)
                code = text_at(e.error, "code") or text_at(e.error, "type") or "unknown"
                if self._quiet_log.allow("transcription_failed", now) is not None:
                    log.warning("visitor transcription failed (%s); marked in the transcript", code,
                                extra=event("transcription_failed", code=code))  # fmt: skip
                return [Transcript("visitor", FAILED_MARK, e.item_id)]
            case ev.TimeoutTriggered():
                return [IdleTimeout()]
            case ev.ErrorEvent():
                return self._on_error(e.error)
        return []

    def _on_audio(self, item_id: str, pcm: bytes, now: float) -> list[Effect]:
        if len(pcm) % 2:
            # PCM16 comes in whole samples; a stray byte would shift every sample after it.
            self._skip("odd", f"odd-length audio delta ({len(pcm)} bytes): last byte dropped", now, what="part of a")
            pcm = pcm[:-1]
        if self.playout.is_new(item_id):
            self.transcripts.assistant_started(item_id)
        if not self.playout.audio(item_id, pcm):
            return []  # in flight when the visitor interrupted: never played
        return [PlayAudio(item_id, pcm)] if pcm else []

    def _barge_in(self) -> list[Effect]:
        """The visitor cut in: the audio in the speaker goes, and so does audio still coming."""
        return [FlushPlayback()] if self.playout.interrupt() else []

    def _on_response_done(self, r: Mapping[str, Any], now: float) -> list[Effect]:
        rid = text_at(r, "id")
        status = text_at(r, "status") or "completed"
        details = obj(r, "status_details")
        error = obj(details, "error")
        code = text_at(error, "code") or text_at(error, "type")
        reason = text_at(details, "reason") or code or None
        usage = Usage.from_response(r.get("usage"))
        self.usage = self.usage + usage
        resp = self.responses.done(rid, status)
        out: list[Effect] = [ResponseFinished(rid, status, reason, usage)]
        if resp is None:
            # Never announced by response.created: its usage counts, nothing else does.
            self._skip("done", f"response.done of unknown response {rid!r}", now, logging.INFO, what="stray")
            self._maybe_respond()
            return out
        out += self._outcome(status, code, text_at(error, "message"), reason, resp, rid)
        if resp.calls and status == "completed":
            self._awaiting.update(dict.fromkeys(c.call_id for c in resp.calls))
            out.append(RunTools(tuple(resp.calls)))
        elif resp.calls:
            log.info("%d tool call(s) of %s response %s not run", len(resp.calls), status, rid)
        self._maybe_respond()
        return out

    def _outcome(
        self, status: str, code: str, message: str, reason: str | None, resp: OpenResponse, rid: str
    ) -> list[Effect]:
        match fl.response_outcome(status, code):
            case fl.Outcome.COMPLETED:
                self._retries_left = 1
            case fl.Outcome.INCOMPLETE:
                log.warning("response %s incomplete (%s)", rid, reason or status,
                            extra=event("response_incomplete", reason=reason or status))  # fmt: skip
            case fl.Outcome.FATAL:
                return [FatalError(code, message)]
            case fl.Outcome.RETRY:
                retry = self._retries_left > 0
                if retry:
                    self._retries_left -= 1
                    self._retry_extra, self._retry_due = resp.extra, True
                return [ResponseFailed(code or "failed", message, retry)]
        return []

    def _on_error(self, err: ev.ErrorDetail) -> list[Effect]:
        code = err.code or ""
        caused_by = self._sent_types.get(err.event_id or "", "?")
        fields = {"code": code, "client_event": caused_by}
        kind = fl.classify_error(code, caused_by)
        if kind is fl.ErrorKind.BENIGN:
            log.debug("benign race error %s (after %s)", code, caused_by)
            if code == "conversation_already_has_active_response" and caused_by == "response.create":
                # Our request lost the race; whatever we wanted to ask for is asked again
                # when the active response finishes.
                self._want_response = True
                self._pending_extra = self._pending_extra or self.responses.lost_race(err.event_id)
            return []
        if kind is fl.ErrorKind.FATAL:
            # Logged once, at ERROR, by whoever acts on the effect (the connection owner).
            log.debug("fatal Realtime error %s", code)
            return [FatalError(code, err.message)]
        if kind is fl.ErrorKind.CONFIG:
            detail = f"configuration rejected by the service: {err.param or '-'}: {err.message}"
            return [FatalError(CONFIG_REJECTED, detail)]
        if kind is fl.ErrorKind.RECYCLE:
            log.info("Realtime session expired; recycling", extra=event("realtime_error", **fields))
            return [Recycle(code)]
        if kind is fl.ErrorKind.REQUEST_REFUSED:
            # Nothing will answer the refused request: it must not keep the session "busy".
            self.responses.refused(err.event_id)
        log.warning("Realtime error %s caused by %s %s: %s", code or err.type, caused_by, err.event_id or "-",
                    err.message, extra=event("realtime_error", **fields))  # fmt: skip
        return []

    # -- recycle --------------------------------------------------------------------

    @property
    def quiet(self) -> bool:
        """No response is active or due and no tool output is awaited: a safe moment to recycle."""
        return self.active_response is None and not self._awaiting and not self._want_response and not self._retry_due

    @property
    def transcript(self) -> list[tuple[str, str]]:
        """The conversation so far as ``(role, text)`` lines (visitor items still awaited marked)."""
        return self.transcripts.lines()

    def condensed_transcript(self, max_chars: int = 2000) -> str:
        """The conversation as heard, as plain lines, newest kept when it is too long."""
        return self.transcripts.condensed(max_chars)

    def replay_into(self, fresh: RealtimeSession) -> None:
        """Prime a fresh session (after expiry) with this one's config and a transcript."""
        fresh.start()
        summary = self.condensed_transcript()
        if summary:
            fresh._send(ev.system_text(fresh._eid(), "The conversation so far (continue it):\n" + summary))
        fresh.transcripts = self.transcripts.copy()
        # A request the dropped connection never answered (the greeting, a goodbye) is asked
        # again once the new session is configured; a reply that had started is not repeated.
        unanswered, extra = self.responses.unanswered()
        if unanswered or self._want_response:
            fresh._want_response = True
            fresh._pending_extra = extra or self._pending_extra
