"""Typed Realtime wire events (GA names), for what the kiosk sends and what it handles.

Server events: one model per type we act on, parsed by :func:`parse_server_event`, which
accepts the beta names as aliases (``response.audio.delta`` -> ``response.output_audio.delta``)
and returns ``None`` for types we do not know (logged at DEBUG by the caller). Server models
ignore extra keys: the service adds fields over time and that must not break a kiosk.

Client events are built by small functions returning plain dicts in the GA shape; the
conformance tests validate every one of them against the ``openai`` package's models.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

# ---- server events ------------------------------------------------------------------
# Each model declares only the fields the core uses: a wrong type in a field it does not
# use must not cost the whole event (a speech_started with a garbled audio_start_ms still
# starts a barge-in).


class ServerEvent(BaseModel):
    """Base of every server event we handle."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: str


class Ignored(ServerEvent):
    """Known events the kiosk has no use for (kept typed so they are not 'unknown')."""


class SessionUpdated(ServerEvent):
    """``session.updated``: the configuration we sent is in force."""


class SpeechStarted(ServerEvent):
    """``input_audio_buffer.speech_started``."""


class SpeechStopped(ServerEvent):
    """``input_audio_buffer.speech_stopped``."""


class BufferCommitted(ServerEvent):
    """``input_audio_buffer.committed``: a visitor item whose transcript is now awaited."""

    item_id: str = ""


class TimeoutTriggered(ServerEvent):
    """``input_audio_buffer.timeout_triggered``: the visitor stayed silent after a reply."""


class InputTranscriptDone(ServerEvent):
    """``conversation.item.input_audio_transcription.completed``."""

    item_id: str = ""
    transcript: str = ""
    usage: Any = None  # read defensively by Usage.from_transcription


class InputTranscriptFailed(ServerEvent):
    """``conversation.item.input_audio_transcription.failed``."""

    item_id: str = ""
    error: Any = None


class ResponseCreated(ServerEvent):
    """``response.created``."""

    response: dict[str, Any]


class ResponseDone(ServerEvent):
    """``response.done``: final status and usage."""

    response: dict[str, Any]


class AudioDelta(ServerEvent):
    """``response.output_audio.delta``: base64 PCM16 at 24 kHz, decoded (and checked) on parsing."""

    item_id: str
    delta: bytes

    @field_validator("delta", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> bytes:
        if not isinstance(value, str):
            raise ValueError("not a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except ValueError as exc:  # binascii.Error, or non-ASCII text
            raise ValueError(f"invalid base64 ({exc})") from None

    def pcm(self) -> bytes:
        """The decoded audio bytes."""
        return self.delta


class TranscriptDone(ServerEvent):
    """``response.output_audio_transcript.done``."""

    item_id: str = ""
    transcript: str = ""


class FunctionCallArgumentsDone(ServerEvent):
    """``response.function_call_arguments.done``: a complete tool call."""

    response_id: str
    call_id: str
    name: str
    arguments: str


class ErrorDetail(BaseModel):
    """The ``error`` object of an ``error`` event."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: str = ""
    code: str | None = None
    message: str = ""
    param: str | None = None
    event_id: str | None = None


class ErrorEvent(ServerEvent):
    """``error``: most leave the session open."""

    error: ErrorDetail


SERVER_EVENTS: dict[str, type[ServerEvent]] = {
    "session.created": Ignored,
    "session.updated": SessionUpdated,
    "input_audio_buffer.speech_started": SpeechStarted,
    "input_audio_buffer.speech_stopped": SpeechStopped,
    "input_audio_buffer.committed": BufferCommitted,
    "input_audio_buffer.cleared": Ignored,
    "input_audio_buffer.timeout_triggered": TimeoutTriggered,
    "conversation.item.added": Ignored,
    "conversation.item.done": Ignored,
    "conversation.item.created": Ignored,
    "conversation.item.retrieved": Ignored,
    "conversation.item.truncated": Ignored,
    "conversation.item.deleted": Ignored,
    "conversation.item.input_audio_transcription.delta": Ignored,
    "conversation.item.input_audio_transcription.segment": Ignored,
    "conversation.item.input_audio_transcription.completed": InputTranscriptDone,
    "conversation.item.input_audio_transcription.failed": InputTranscriptFailed,
    "response.created": ResponseCreated,
    "response.done": ResponseDone,
    "response.output_item.added": Ignored,
    "response.output_item.done": Ignored,
    "response.content_part.added": Ignored,
    "response.content_part.done": Ignored,
    "response.output_audio.delta": AudioDelta,
    "response.output_audio.done": Ignored,
    "response.output_audio_transcript.delta": Ignored,
    "response.output_audio_transcript.done": TranscriptDone,
    "response.output_text.delta": Ignored,  # text, never audio
    "response.output_text.done": Ignored,
    "response.function_call_arguments.delta": Ignored,
    "response.function_call_arguments.done": FunctionCallArgumentsDone,
    "rate_limits.updated": Ignored,
    "error": ErrorEvent,
}

# The beta interface's names for the same events.
BETA_ALIASES = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
}


class MalformedEvent(ValueError):
    """A server frame that is not JSON, not an object, or does not fit its type's model."""


def parse_server_event(text: str | bytes) -> ServerEvent | None:
    """Parse one server frame. ``None`` for an unknown type; MalformedEvent for garbage.

    Deep nesting is garbage too: the JSON decoder's recursion limit is a RecursionError,
    not a JSON error, and must not escape.
    """
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedEvent(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise MalformedEvent("not an event object with a string 'type'")
    raw_type: str = data["type"]
    name = BETA_ALIASES.get(raw_type, raw_type)
    model = SERVER_EVENTS.get(name)
    if model is None:
        return None
    data["type"] = name
    try:
        return model.model_validate(data)
    except RecursionError:
        raise MalformedEvent(f"{name}: nested too deeply") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedEvent(f"{name}: {where}: {first['msg']}") from None


# ---- client events ------------------------------------------------------------------

Event = dict[str, Any]


def session_update(session: dict[str, Any], event_id: str) -> Event:
    """``session.update`` with a GA ``session`` object (its ``type`` included by the caller)."""
    return {"type": "session.update", "event_id": event_id, "session": session}


def audio_append(pcm: bytes) -> Event:
    """``input_audio_buffer.append`` of PCM16 24 kHz mono (no event id: the hot path)."""
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode("ascii")}


def response_create(event_id: str, instructions: str | None = None) -> Event:
    """``response.create`` tagged with its event id in ``metadata`` (the service echoes it in
    the response, so the kiosk knows which response is its own), optionally with instructions.
    """
    response: dict[str, Any] = {"metadata": {"client_event_id": event_id}}
    if instructions:
        response["instructions"] = instructions
    return {"type": "response.create", "event_id": event_id, "response": response}


def response_cancel(event_id: str, response_id: str) -> Event:
    """``response.cancel`` of a given response."""
    return {"type": "response.cancel", "event_id": event_id, "response_id": response_id}


def item_truncate(event_id: str, item_id: str, audio_end_ms: int, content_index: int = 0) -> Event:
    """``conversation.item.truncate``: what the visitor actually heard of an item."""
    return {
        "type": "conversation.item.truncate",
        "event_id": event_id,
        "item_id": item_id,
        "content_index": content_index,
        "audio_end_ms": audio_end_ms,
    }


def item_delete(event_id: str, item_id: str) -> Event:
    """``conversation.item.delete``."""
    return {"type": "conversation.item.delete", "event_id": event_id, "item_id": item_id}


def function_call_output(event_id: str, call_id: str, output: str) -> Event:
    """``conversation.item.create`` of a ``function_call_output``."""
    return {
        "type": "conversation.item.create",
        "event_id": event_id,
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def system_text(event_id: str, text: str) -> Event:
    """``conversation.item.create`` of a system message (context replayed into a new session)."""
    return {
        "type": "conversation.item.create",
        "event_id": event_id,
        "item": {"type": "message", "role": "system", "content": [{"type": "input_text", "text": text}]},
    }


def trace_view(event: Event) -> Event:
    """A copy fit for a wire trace: base64 audio replaced by ``"<N bytes>"``."""
    out = dict(event)
    for key in ("audio", "delta"):
        value = out.get(key)
        if isinstance(value, str) and out.get("type") in _AUDIO_TYPES:
            out[key] = f"<{len(value) * 3 // 4 - value.count('=')} bytes>"
    return out


_AUDIO_TYPES = frozenset({"input_audio_buffer.append", "response.output_audio.delta", "response.audio.delta"})

Direction = Literal["in", "out"]
