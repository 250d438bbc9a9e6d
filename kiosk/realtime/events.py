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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# ---- server events ------------------------------------------------------------------


class ServerEvent(BaseModel):
    """Base of every server event we handle."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: str
    event_id: str = ""


class SessionCreated(ServerEvent):
    """``session.created``."""

    session: dict[str, Any] = Field(default_factory=dict)


class SessionUpdated(ServerEvent):
    """``session.updated``: the configuration we sent is in force."""

    session: dict[str, Any] = Field(default_factory=dict)


class SpeechStarted(ServerEvent):
    """``input_audio_buffer.speech_started``."""

    audio_start_ms: int = 0
    item_id: str = ""


class SpeechStopped(ServerEvent):
    """``input_audio_buffer.speech_stopped``."""

    audio_end_ms: int = 0
    item_id: str = ""


class BufferCommitted(ServerEvent):
    """``input_audio_buffer.committed``."""

    item_id: str = ""
    previous_item_id: str | None = None


class TimeoutTriggered(ServerEvent):
    """``input_audio_buffer.timeout_triggered``: the visitor stayed silent after a reply."""

    audio_start_ms: int = 0
    audio_end_ms: int = 0
    item_id: str = ""


class ItemEvent(ServerEvent):
    """``conversation.item.added`` / ``.done`` / legacy ``.created``."""

    item: dict[str, Any] = Field(default_factory=dict)
    previous_item_id: str | None = None


class ItemTruncated(ServerEvent):
    """``conversation.item.truncated``."""

    item_id: str
    content_index: int = 0
    audio_end_ms: int = 0


class ItemDeleted(ServerEvent):
    """``conversation.item.deleted``."""

    item_id: str


class InputTranscriptDone(ServerEvent):
    """``conversation.item.input_audio_transcription.completed``."""

    item_id: str = ""
    content_index: int = 0
    transcript: str = ""


class InputTranscriptFailed(ServerEvent):
    """``conversation.item.input_audio_transcription.failed``."""

    item_id: str = ""
    error: dict[str, Any] = Field(default_factory=dict)


class ResponseCreated(ServerEvent):
    """``response.created``."""

    response: dict[str, Any]


class ResponseDone(ServerEvent):
    """``response.done``: final status and usage."""

    response: dict[str, Any]


class OutputItemAdded(ServerEvent):
    """``response.output_item.added``."""

    response_id: str = ""
    output_index: int = 0
    item: dict[str, Any] = Field(default_factory=dict)


class AudioDelta(ServerEvent):
    """``response.output_audio.delta``: base64 PCM16 at 24 kHz."""

    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0
    delta: str

    def pcm(self) -> bytes:
        """The decoded audio bytes."""
        return base64.b64decode(self.delta)


class AudioDone(ServerEvent):
    """``response.output_audio.done``."""

    response_id: str = ""
    item_id: str = ""


class TranscriptDelta(ServerEvent):
    """``response.output_audio_transcript.delta`` / ``response.output_text.delta`` (text!)."""

    response_id: str = ""
    item_id: str = ""
    delta: str = ""


class TranscriptDone(ServerEvent):
    """``response.output_audio_transcript.done``."""

    response_id: str = ""
    item_id: str = ""
    transcript: str = ""


class TextDone(ServerEvent):
    """``response.output_text.done``."""

    response_id: str = ""
    item_id: str = ""
    text: str = ""


class FunctionCallArgumentsDone(ServerEvent):
    """``response.function_call_arguments.done``: a complete tool call."""

    response_id: str
    item_id: str = ""
    output_index: int = 0
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


class Ignored(ServerEvent):
    """Known events the kiosk has no use for (kept typed so they are not 'unknown')."""


SERVER_EVENTS: dict[str, type[ServerEvent]] = {
    "session.created": SessionCreated,
    "session.updated": SessionUpdated,
    "input_audio_buffer.speech_started": SpeechStarted,
    "input_audio_buffer.speech_stopped": SpeechStopped,
    "input_audio_buffer.committed": BufferCommitted,
    "input_audio_buffer.cleared": Ignored,
    "input_audio_buffer.timeout_triggered": TimeoutTriggered,
    "conversation.item.added": ItemEvent,
    "conversation.item.done": ItemEvent,
    "conversation.item.created": ItemEvent,
    "conversation.item.retrieved": ItemEvent,
    "conversation.item.truncated": ItemTruncated,
    "conversation.item.deleted": ItemDeleted,
    "conversation.item.input_audio_transcription.delta": Ignored,
    "conversation.item.input_audio_transcription.segment": Ignored,
    "conversation.item.input_audio_transcription.completed": InputTranscriptDone,
    "conversation.item.input_audio_transcription.failed": InputTranscriptFailed,
    "response.created": ResponseCreated,
    "response.done": ResponseDone,
    "response.output_item.added": OutputItemAdded,
    "response.output_item.done": OutputItemAdded,
    "response.content_part.added": Ignored,
    "response.content_part.done": Ignored,
    "response.output_audio.delta": AudioDelta,
    "response.output_audio.done": AudioDone,
    "response.output_audio_transcript.delta": TranscriptDelta,
    "response.output_audio_transcript.done": TranscriptDone,
    "response.output_text.delta": TranscriptDelta,
    "response.output_text.done": TextDone,
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
    """Parse one server frame. ``None`` for an unknown type; MalformedEvent for garbage."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"not JSON: {exc}") from None
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
    """``response.create``, optionally with per-response instructions (greeting, goodbye)."""
    ev: Event = {"type": "response.create", "event_id": event_id}
    if instructions:
        ev["response"] = {"instructions": instructions}
    return ev


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
