"""What the simulator accepts from a client: the GA client-event shapes and values, strictly.

The real service rejects unknown parameters (the beta ``modalities``, a top-level
``turn_detection``, ...) with an ``invalid_request_error``; so do we, with the same error
shape (``code``, ``param`` and the client's ``event_id``), so a client that passes the
simulator does not trip over the real thing. Values are checked too (:func:`check_values`):
known voices and models, 24 kHz PCM only, one output modality, numeric ranges; a model
the service no longer serves is refused.
"""

from __future__ import annotations

from typing import Any

# A schema is a dict of allowed keys -> sub-schema; ANY accepts any value; a 1-tuple
# (schema,) is a list of that schema; a set is the allowed values of a string.
ANY: Any = object()
_FORMAT = {"type": {"audio/pcm", "audio/pcmu", "audio/pcma"}, "rate": ANY}
_TURN = {
    "type": {"server_vad", "semantic_vad"},
    "threshold": ANY,
    "prefix_padding_ms": ANY,
    "silence_duration_ms": ANY,
    "create_response": ANY,
    "interrupt_response": ANY,
    "idle_timeout_ms": ANY,
    "eagerness": ANY,
}
_TOOL = {"type": {"function"}, "name": ANY, "description": ANY, "parameters": ANY}
_SESSION = {
    "type": {"realtime", "transcription"},
    "model": ANY,
    "reasoning": {"effort": {"minimal", "low", "medium", "high", "xhigh"}},
    "parallel_tool_calls": ANY,
    "output_modalities": ANY,
    "instructions": ANY,
    "tools": (_TOOL,),
    "tool_choice": ANY,
    "max_output_tokens": ANY,
    "tracing": ANY,
    "truncation": ANY,
    "include": ANY,
    "prompt": ANY,
    "audio": {
        "input": {
            "format": _FORMAT,
            "noise_reduction": {"type": {"near_field", "far_field"}},
            "transcription": {"model": ANY, "language": ANY, "prompt": ANY},
            "turn_detection": _TURN,
        },
        "output": {"format": _FORMAT, "voice": ANY, "speed": ANY},
    },
}
_CONTENT = {
    "type": {"input_text", "input_audio", "text", "output_text", "output_audio", "input_image"},
    "text": ANY,
    "audio": ANY,
    "transcript": ANY,
    "image_url": ANY,
    "detail": ANY,
}
_ITEM = {
    "id": ANY,
    "type": {"message", "function_call", "function_call_output"},
    "object": ANY,
    "status": ANY,
    "role": {"user", "assistant", "system"},
    "content": (_CONTENT,),
    "call_id": ANY,
    "name": ANY,
    "arguments": ANY,
    "output": ANY,
}
_RESPONSE = {
    "instructions": ANY,
    "output_modalities": ANY,
    "tools": (_TOOL,),
    "tool_choice": ANY,
    "max_output_tokens": ANY,
    "conversation": ANY,
    "metadata": ANY,
    "input": ANY,
    "audio": ANY,
    "prompt": ANY,
}

CLIENT_EVENTS: dict[str, dict[str, Any]] = {
    "session.update": {"session": _SESSION},
    "input_audio_buffer.append": {"audio": ANY},
    "input_audio_buffer.commit": {},
    "input_audio_buffer.clear": {},
    "conversation.item.create": {"previous_item_id": ANY, "item": _ITEM},
    "conversation.item.retrieve": {"item_id": ANY},
    "conversation.item.truncate": {"item_id": ANY, "content_index": ANY, "audio_end_ms": ANY},
    "conversation.item.delete": {"item_id": ANY},
    "response.create": {"response": _RESPONSE},
    "response.cancel": {"response_id": ANY},
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "session.update": ("session",),
    "input_audio_buffer.append": ("audio",),
    "conversation.item.create": ("item",),
    "conversation.item.retrieve": ("item_id",),
    "conversation.item.truncate": ("item_id", "content_index", "audio_end_ms"),
    "conversation.item.delete": ("item_id",),
}


class ClientEventError(ValueError):
    """A client event the service would reject: ``code`` and ``param`` as it reports them."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def _check(value: Any, schema: Any, path: str) -> None:
    if schema is ANY:
        return
    if isinstance(schema, set):
        if value not in schema:
            raise ClientEventError(
                "invalid_value",
                f"Invalid value: {value!r}. Supported values are: {', '.join(sorted(map(repr, schema)))}.",
                path,
            )
        return
    if isinstance(schema, tuple):
        if not isinstance(value, list):
            raise ClientEventError("invalid_type", f"Invalid type for '{path}': expected an array.", path)
        for i, v in enumerate(value):
            _check(v, schema[0], f"{path}[{i}]")
        return
    if value is None:  # null switches an optional object off (e.g. turn_detection)
        return
    if not isinstance(value, dict):
        raise ClientEventError("invalid_type", f"Invalid type for '{path}': expected an object.", path)
    for key, sub in value.items():
        if key not in schema:
            raise ClientEventError("unknown_parameter", f"Unknown parameter: '{path}.{key}'.", f"{path}.{key}")
        _check(sub, schema[key], f"{path}.{key}")


def validate_client_event(data: Any) -> dict[str, Any]:
    """Return the event when the service would accept its shape; ClientEventError if not."""
    if not isinstance(data, dict):
        raise ClientEventError("invalid_json", "The event must be a JSON object.")
    etype = data.get("type")
    if not isinstance(etype, str):
        raise ClientEventError("missing_required_parameter", "Missing required parameter: 'type'.", "type")
    schema = CLIENT_EVENTS.get(etype)
    if schema is None:
        raise ClientEventError(
            "invalid_value",
            f"Invalid value: '{etype}'. Supported values are: {', '.join(repr(k) for k in CLIENT_EVENTS)}.",
            "type",
        )
    for key in REQUIRED.get(etype, ()):
        if key not in data:
            raise ClientEventError("missing_required_parameter", f"Missing required parameter: '{key}'.", key)
    for key, value in data.items():
        if key in ("type", "event_id"):
            continue
        if key not in schema:
            raise ClientEventError("unknown_parameter", f"Unknown parameter: '{key}'.", key)
        _check(value, schema[key], key)
    if etype == "session.update" and "type" not in data["session"]:
        raise ClientEventError(
            "missing_required_parameter", "Missing required parameter: 'session.type'.", "session.type"
        )
    return data


def error_event(
    event_id: str,
    code: str,
    message: str,
    param: str | None = None,
    client_event_id: str | None = None,
    etype: str = "invalid_request_error",
) -> dict[str, Any]:
    """An ``error`` server event in the service's shape."""
    return {
        "type": "error",
        "event_id": event_id,
        "error": {"type": etype, "code": code, "message": message, "param": param, "event_id": client_event_id},
    }


# ---- values -------------------------------------------------------------------------
# The catalogue the simulator serves (the openai package 3.57's literals). A model missing
# here is unknown to the service; Habits.retired_models are known but shut down.

REALTIME_MODELS = frozenset({
    "gpt-realtime", "gpt-realtime-1.5", "gpt-realtime-2", "gpt-realtime-2.1", "gpt-realtime-2.1-mini",
    "gpt-realtime-2025-08-28", "gpt-realtime-mini", "gpt-realtime-mini-2025-10-06", "gpt-realtime-mini-2025-12-15",
    "gpt-audio-1.5", "gpt-audio-mini", "gpt-audio-mini-2025-10-06", "gpt-audio-mini-2025-12-15",
})  # fmt: skip
TRANSCRIPTION_MODELS = frozenset({
    "whisper-1", "gpt-transcribe", "gpt-live-transcribe", "gpt-realtime-whisper", "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15", "gpt-4o-transcribe", "gpt-4o-transcribe-diarize",
})  # fmt: skip
VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"})
PCM_RATE = 24000


def model_refusal(model: str, retired: list[str]) -> str | None:
    """Why the service would refuse ``model``, or None when it serves it."""
    if model in retired:
        return f"The model `{model}` has been shut down. See https://platform.openai.com/docs/deprecations."
    if model not in REALTIME_MODELS:
        return f"The model `{model}` does not exist or you do not have access to it."
    return None


def _path(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _number(value: Any, param: str, low: float, high: float | None, integer: bool) -> None:
    kind = "integer" if integer else "decimal"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        expected = "an integer" if integer else "a number"
        raise ClientEventError("invalid_type", f"Invalid type for '{param}': expected {expected}.", param)
    if value < low:
        raise ClientEventError(
            f"{kind}_below_min_value",
            f"Invalid '{param}': {kind} below minimum value. Expected a value >= {low:g}, but got {value} instead.",
            param,
        )
    if high is not None and value > high:
        raise ClientEventError(
            f"{kind}_above_max_value",
            f"Invalid '{param}': {kind} above maximum value. Expected a value <= {high:g}, but got {value} instead.",
            param,
        )


def _one_of(value: Any, allowed: frozenset[str], param: str) -> None:
    if value not in allowed:
        raise ClientEventError(
            "invalid_value", f"Invalid value: {value!r}. Supported values are: {', '.join(sorted(allowed))}.", param
        )


def _max_tokens(value: Any, param: str) -> None:
    if value is not None and value != "inf":
        _number(value, param, 1, 4096, integer=True)


def _modalities(value: Any, param: str) -> None:
    if value is not None and value not in (["audio"], ["text"]):
        raise ClientEventError(
            "invalid_value",
            f"Invalid '{param}': {value!r}. Use ['audio'] or ['text']: both at the same time are not supported.",
            param,
        )


def _format(value: Any, param: str) -> None:
    pcm = isinstance(value, dict) and value.get("type", "audio/pcm") == "audio/pcm" and "rate" in value
    if pcm and value["rate"] != PCM_RATE:
        raise ClientEventError(
            "invalid_value", f"Invalid '{param}.rate': {value['rate']!r}. Only 24000 is supported.", f"{param}.rate"
        )


def _session_values(s: dict[str, Any], model: str, retired: list[str]) -> None:
    if "model" in s:
        refusal = model_refusal(s["model"], retired) if isinstance(s["model"], str) else "The model must be a string."
        if refusal is None and s["model"] != model:
            refusal = f"The model cannot be changed in a session (it is `{model}`)."
        if refusal is not None:
            raise ClientEventError("invalid_value", refusal, "session.model")
    _modalities(s.get("output_modalities"), "session.output_modalities")
    _max_tokens(s.get("max_output_tokens"), "session.max_output_tokens")
    for side in ("input", "output"):
        _format(_path(s, "audio", side, "format"), f"session.audio.{side}.format")
    trans = _path(s, "audio", "input", "transcription", "model")
    if trans is not None:
        _one_of(trans, TRANSCRIPTION_MODELS - set(retired), "session.audio.input.transcription.model")
    td = _path(s, "audio", "input", "turn_detection")
    if isinstance(td, dict):
        p = "session.audio.input.turn_detection"
        ranges = {"threshold": (0.0, 1.0, False), "prefix_padding_ms": (0, None, True),
                  "silence_duration_ms": (0, None, True), "idle_timeout_ms": (5000, 30000, True)}  # fmt: skip
        for key, (low, high, integer) in ranges.items():
            if td.get(key) is not None:
                _number(td[key], f"{p}.{key}", low, high, integer)
    voice = _path(s, "audio", "output", "voice")
    if voice is not None and not (isinstance(voice, dict) and isinstance(voice.get("id"), str)):
        _one_of(voice, VOICES, "session.audio.output.voice")
    speed = _path(s, "audio", "output", "speed")
    if speed is not None:
        _number(speed, "session.audio.output.speed", 0.25, 1.5, integer=False)


def _metadata(value: Any, param: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or len(value) > 16:
        raise ClientEventError("invalid_value", f"Invalid '{param}': at most 16 string pairs.", param)
    for k, v in value.items():
        if len(k) > 64 or not isinstance(v, str) or len(v) > 512:
            raise ClientEventError(
                "invalid_value", f"Invalid '{param}.{k}': keys up to 64, values up to 512 characters.", f"{param}.{k}"
            )


def check_values(event: dict[str, Any], model: str, retired: list[str]) -> None:
    """Check the values of a well-shaped client event like the service; ClientEventError if not."""
    etype = event["type"]
    if etype == "session.update":
        _session_values(event["session"], model, retired)
    elif etype == "response.create":
        r = event.get("response") or {}
        _modalities(r.get("output_modalities"), "response.output_modalities")
        _max_tokens(r.get("max_output_tokens"), "response.max_output_tokens")
        _metadata(r.get("metadata"), "response.metadata")
        if r.get("instructions") is not None and not isinstance(r["instructions"], str):
            raise ClientEventError("invalid_type", "Invalid type for 'response.instructions'.", "response.instructions")
    elif etype == "conversation.item.truncate":
        _number(event["audio_end_ms"], "audio_end_ms", 0, None, integer=True)
        _number(event["content_index"], "content_index", 0, None, integer=True)
    elif etype == "input_audio_buffer.append" and not isinstance(event["audio"], str):
        raise ClientEventError("invalid_type", "Invalid type for 'audio': expected a base64 string.", "audio")
