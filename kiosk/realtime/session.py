"""The Realtime session core: sans-I/O, time passed in.

Feed it server frames with :meth:`RealtimeSession.receive`; it returns *effects* for the
rest of the kiosk (play this audio, flush the speaker, run these tools, the session is
ready, ...) and queues client events, which the connection drains with :meth:`drain`.
It owns the protocol rules that voice kiosks get wrong:

* under server VAD it never sends ``input_audio_buffer.commit`` nor a ``response.create``
  after ``committed`` (the server answers by itself);
* ``response.create`` is only ever sent while no response is active;
* on ``speech_started`` it asks for an immediate playback flush, then truncates each
  assistant item to what the speaker reports as *played*, clamped to the audio received;
  an item of which nothing was heard is deleted instead (see :meth:`playback_flushed`);
* tool calls run only once their response is ``completed``; every call gets one
  ``function_call_output`` and the batch gets exactly one ``response.create``;
* errors are classified by ``code``, never by message.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kiosk.config import RealtimeSettings
from kiosk.realtime import events as ev
from kiosk.realtime.effects import (
    Effect,
    FatalError,
    FlushPlayback,
    IdleTimeout,
    PlayAudio,
    Ready,
    Recycle,
    ResponseFinished,
    RunTools,
    ToolCall,
    Transcript,
    Usage,
    VisitorSpeaking,
)

log = logging.getLogger(__name__)

# The effects are part of this core's interface: ``rs.Ready``, ``rs.Usage``, ...
__all__ = [
    "Effect",
    "FatalError",
    "FlushPlayback",
    "IdleTimeout",
    "PlayAudio",
    "Ready",
    "RealtimeSession",
    "Recycle",
    "ResponseFinished",
    "RunTools",
    "SessionConfig",
    "ToolCall",
    "Transcript",
    "Usage",
    "VisitorSpeaking",
]

BYTES_PER_MS = 48  # 24 kHz * 2 bytes, mono

# Codes that a barge-in race produces on a healthy session: not worth a warning.
BENIGN_CODES = frozenset({"response_cancel_not_active", "conversation_already_has_active_response"})
FATAL_CODES = frozenset({"invalid_api_key", "insufficient_quota"})
RECYCLE_CODES = frozenset({"session_expired"})


@dataclass(frozen=True)
class SessionConfig:
    """What the session.update says: the ``[realtime]`` settings as they are, plus what the
    composition root adds (the rendered instructions and the tools' schemas)."""

    settings: RealtimeSettings
    instructions: str
    tools: tuple[dict[str, Any], ...] = ()
    speed: float = 1.0

    def session_object(self) -> dict[str, Any]:
        """The GA ``session`` object of a full ``session.update``."""
        r = self.settings
        turn: dict[str, Any] = {
            "type": "server_vad",
            "threshold": r.vad_threshold,
            "prefix_padding_ms": r.prefix_padding_ms,
            "silence_duration_ms": r.silence_duration_ms,
            "create_response": True,
            "interrupt_response": r.interrupt_response,
        }
        if r.idle_timeout_ms is not None:
            turn["idle_timeout_ms"] = r.idle_timeout_ms
        return {
            "type": "realtime",
            "model": r.model,
            "output_modalities": ["audio"],
            "instructions": self.instructions,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "noise_reduction": {"type": "far_field"},
                    "transcription": {"model": r.transcription_model, "language": r.language},
                    "turn_detection": turn,
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "voice": r.voice,
                    "speed": self.speed,
                },
            },
            "tools": list(self.tools),
            "tool_choice": "auto",
            "max_output_tokens": r.max_output_tokens,
        }


@dataclass
class _Response:
    calls: list[ToolCall] = field(default_factory=list)
    status: str | None = None


@dataclass
class _AudioItem:
    received_bytes: int = 0


class RealtimeSession:
    """One Realtime conversation's protocol state. Not thread-safe; owned by one task."""

    def __init__(self, config: SessionConfig, id_prefix: str = "kiosk") -> None:
        self.config = config
        self._ids = (f"{id_prefix}_{n}" for n in itertools.count(1))
        self._out: list[ev.Event] = []
        self._ready = False
        self.active_response: str | None = None
        self._responses: OrderedDict[str, _Response] = OrderedDict()
        self._audio: OrderedDict[str, _AudioItem] = OrderedDict()
        self._awaiting: dict[str, None] = {}
        self._pending_outputs: list[tuple[str, str]] = []
        self._want_response = False
        self._pending_instructions: str | None = None
        self._sent_types: OrderedDict[str, str] = OrderedDict()
        self.usage = Usage()
        self.transcript: list[tuple[str, str]] = []
        self.statuses: OrderedDict[str, str] = OrderedDict()  # final status per response id

    # -- outgoing -------------------------------------------------------------------

    def _send(self, event: ev.Event) -> None:
        eid = event.get("event_id")
        if isinstance(eid, str):
            self._sent_types[eid] = str(event["type"])
            while len(self._sent_types) > 256:
                self._sent_types.popitem(last=False)
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

    def request_response(self, instructions: str | None = None, *, interrupt: bool = False) -> bool:
        """Ask for a response (greeting, goodbye); True if sent now.

        While a response is active the request waits for its ``response.done`` (and with
        ``interrupt`` the active one is cancelled first, for a goodbye that must not wait).
        """
        if self.active_response is not None:
            log.debug("response.create deferred: %s is active", self.active_response)
            if interrupt:
                self.cancel_active()
            self._want_response = True
            self._pending_instructions = instructions or self._pending_instructions
            return False
        self._send(ev.response_create(self._eid(), instructions))
        # Count it active at once: a second request before response.created must not collide.
        self.active_response = "<requested>"
        return True

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
        """After a barge-in flush: tell the server what the visitor actually heard.

        ``played_ms`` maps each assistant item that still had audio in the speaker to the
        milliseconds of it that were played. Items not in the map were heard in full.
        An item with 0 ms played is *deleted* rather than truncated to 0: the visitor heard
        none of it, so the model must not believe it was said, and a delete cannot trip
        the server's "audio content is already shorter" check.
        """
        for item_id, ms in played_ms.items():
            item = self._audio.get(item_id)
            if item is None:
                continue
            received_ms = item.received_bytes // BYTES_PER_MS
            end = max(0, min(int(ms), received_ms))
            if end == 0:
                self._send(ev.item_delete(self._eid(), item_id))
            elif end < received_ms:
                self._send(ev.item_truncate(self._eid(), item_id, end))
        # Everything received before the flush is now either heard in full or accounted for.
        self._audio.clear()

    def cancel_active(self) -> None:
        """Cancel the active response (only needed when the server does not interrupt)."""
        rid = self.active_response
        if rid is not None and rid != "<requested>":
            self._send(ev.response_cancel(self._eid(), rid))

    def _maybe_respond(self) -> None:
        if self._want_response and self.active_response is None:
            self._want_response = False
            instructions, self._pending_instructions = self._pending_instructions, None
            self.request_response(instructions)

    # -- incoming -------------------------------------------------------------------

    def receive(self, text: str | bytes, now: float) -> list[Effect]:
        """Handle one server frame at monotonic time ``now``; return effects in order.

        Malformed frames are logged and skipped; unknown types are skipped at DEBUG.
        """
        del now  # part of the contract for timing-aware policies; nothing needs it yet
        try:
            event = ev.parse_server_event(text)
        except ev.MalformedEvent as exc:
            log.warning("malformed server event skipped: %s", exc, extra={"kiosk": {"event": "malformed_event"}})
            return []
        if event is None:
            log.debug("unknown server event type skipped")
            return []
        return self._dispatch(event)

    def _dispatch(self, e: ev.ServerEvent) -> list[Effect]:
        match e:
            case ev.SessionUpdated():
                if not self._ready:
                    self._ready = True
                    return [Ready()]
            case ev.AudioDelta():
                item = self._audio.setdefault(e.item_id, _AudioItem())
                pcm = e.pcm()
                item.received_bytes += len(pcm)
                return [PlayAudio(e.item_id, pcm)]
            case ev.SpeechStarted():
                return self._on_speech_started()
            case ev.SpeechStopped():
                return [VisitorSpeaking(False)]
            case ev.ResponseCreated():
                rid = str(e.response.get("id", ""))
                self.active_response = rid
                self._responses[rid] = _Response()
                while len(self._responses) > 64:
                    self._responses.popitem(last=False)
            case ev.FunctionCallArgumentsDone():
                self._responses.setdefault(e.response_id, _Response()).calls.append(
                    ToolCall(e.call_id, e.name, e.arguments, e.response_id)
                )
            case ev.ResponseDone():
                return self._on_response_done(e)
            case ev.TranscriptDone() if e.transcript:
                self.transcript.append(("assistant", e.transcript))
                return [Transcript("assistant", e.transcript, e.item_id)]
            case ev.InputTranscriptDone() if e.transcript.strip():
                self.transcript.append(("visitor", e.transcript.strip()))
                return [Transcript("visitor", e.transcript.strip(), e.item_id)]
            case ev.TimeoutTriggered():
                return [IdleTimeout()]
            case ev.ErrorEvent():
                return self._on_error(e.error)
        return []

    def _on_speech_started(self) -> list[Effect]:
        out: list[Effect] = [VisitorSpeaking(True)]
        if self._audio:
            out.append(FlushPlayback())
        if not self.config.settings.interrupt_response:
            self.cancel_active()
        return out

    def _on_response_done(self, e: ev.ResponseDone) -> list[Effect]:
        r = e.response
        rid = str(r.get("id", ""))
        status = str(r.get("status", "completed"))
        details = r.get("status_details") or {}
        reason = details.get("reason") if isinstance(details, dict) else None
        usage = Usage.from_response(r.get("usage"))
        self.usage = self.usage + usage
        resp = self._responses.pop(rid, _Response())
        self.statuses[rid] = status
        while len(self.statuses) > 64:
            self.statuses.popitem(last=False)
        if self.active_response in (rid, "<requested>"):
            self.active_response = None
        out: list[Effect] = [ResponseFinished(rid, status, reason, usage)]
        if resp.calls:
            if status == "completed":
                self._awaiting.update(dict.fromkeys(c.call_id for c in resp.calls))
                out.append(RunTools(tuple(resp.calls)))
            else:
                log.info("%d tool call(s) of %s response %s not run", len(resp.calls), status, rid)
        self._maybe_respond()
        return out

    def _on_error(self, err: ev.ErrorDetail) -> list[Effect]:
        code = err.code or ""
        caused_by = self._sent_types.get(err.event_id or "", "?")
        fields = {"event": "realtime_error", "code": code, "client_event": caused_by}
        if code in BENIGN_CODES:
            log.debug("benign race error %s (after %s)", code, caused_by)
            if code == "conversation_already_has_active_response" and caused_by == "response.create":
                # Our request lost the race; whatever we wanted to ask for is asked again
                # when the active response finishes.
                self._want_response = True
            return []
        if code in FATAL_CODES:
            # Logged once, at ERROR, by whoever acts on the effect (the connection owner).
            log.debug("fatal Realtime error %s", code)
            return [FatalError(code, err.message)]
        if code in RECYCLE_CODES:
            log.info("Realtime session expired; recycling", extra={"kiosk": fields})
            return [Recycle(code)]
        log.warning(
            "Realtime error %s caused by %s %s: %s",
            code or err.type,
            caused_by,
            err.event_id or "-",
            err.message,
            extra={"kiosk": fields},
        )
        return []

    # -- recycle --------------------------------------------------------------------

    @property
    def quiet(self) -> bool:
        """No response is active and no tool output is awaited: a safe moment to recycle."""
        return self.active_response is None and not self._awaiting and not self._want_response

    def condensed_transcript(self, max_chars: int = 2000) -> str:
        """The conversation so far as plain lines, newest kept when it is too long."""
        lines = [f"{role}: {text}" for role, text in self.transcript]
        text = "\n".join(lines)
        return text[-max_chars:]

    def replay_into(self, fresh: RealtimeSession) -> None:
        """Prime a fresh session (after expiry) with this one's config and a transcript."""
        fresh.start()
        summary = self.condensed_transcript()
        if summary:
            fresh._send(ev.system_text(fresh._eid(), "The conversation so far (continue it):\n" + summary))
        fresh.transcript = list(self.transcript)
