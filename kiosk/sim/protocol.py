"""What the simulator accepts from a client: the GA client-event shapes, strictly.

The real service rejects unknown parameters (the beta ``modalities``, a top-level
``turn_detection``, ...) with an ``invalid_request_error``; so do we, with the same error
shape, so a client that passes the simulator does not trip over the real thing.
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
