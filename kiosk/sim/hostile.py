"""A catalogue of hostile Realtime service behaviours, each a :class:`~kiosk.sim.options.Faults`.

The chaos suite (tests/test_chaos_realtime.py) runs a kiosk against every entry; the
demo can too (``Faults`` are plain data). Each entry says what a visitor must experience
when the service behaves like that (:class:`Outcome`): the visit is served as usual (the
kiosk skips, retries or reconnects), the visit goes on over a new connection, the kiosk
plays its offline message (nothing it can do helps), or it stops with the error light (a
refusal no retry can fix).

Several frames carry a visitor's e-mail address and phone number (:data:`PII`), so the
suite can check that nothing the service sends ends up in the logs verbatim.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kiosk.sim.options import Faults

PII = ("jane.doe@example.com", "+1 415 555 0132")
SAY = f"My e-mail is {PII[0]} and my phone {PII[1]}."


class Outcome(enum.Enum):
    """What the visitor experiences."""

    SERVES = "serves"  # greeted; the button ends the visit; the idle light comes back
    RECOVERS = "recovers"  # the connection is replaced mid-visit; the visit goes on and the button ends it
    OFFLINE = "offline"  # the offline message and light: the service cannot be reached usefully
    FATAL = "fatal"  # the error light: refused for good (a bad key, no quota)


@dataclass(frozen=True)
class Behaviour:
    """One hostile behaviour: the faults that make it, and what the visitor must experience."""

    name: str
    faults: Callable[[], Faults]
    outcome: Outcome = Outcome.SERVES


def _j(**event: Any) -> str:
    return json.dumps(event)


def _delta(delta: Any, rid: str = "resp_rogue", item: Any = "item_rogue") -> str:
    return _j(type="response.output_audio.delta", response_id=rid, item_id=item, output_index=0, content_index=0,
              delta=delta)  # fmt: skip


def _nested(depth: int) -> Any:
    node: Any = "x"
    for _ in range(depth):
        node = [node]
    return node


def _error(code: str, etype: str = "invalid_request_error") -> str:
    return _j(type="error", error={"type": etype, "code": code, "message": f"{code}: {SAY}", "param": None,
                                   "event_id": None})  # fmt: skip


def _frames(*frames: str | bytes) -> Callable[[], Faults]:
    """Frames sent once, right after ``session.updated`` (the warm standby gets them)."""
    return lambda: Faults(inject_frames=list(frames))


def _mid_reply(*frames: str | bytes) -> Callable[[], Faults]:
    """Frames sent once, in the middle of the greeting."""
    return lambda: Faults(inject_mid_reply=list(frames))


def _repeat(frame: str, n: int) -> Callable[[], Faults]:
    return lambda: Faults(inject_frames=[frame] * n)


FRAMES = [
    Behaviour("not_json", _frames("{not json")),
    Behaviour("truncated_json", _frames('{"type": "response.output_audio.delta", "delta": "AAAA')),
    Behaviour("binary_frame", _frames(b"\x00\xff\xfe binary")),
    Behaviour("json_in_binary_frame", _frames(_j(type="response.created", response={"id": "resp_b"}).encode())),
    Behaviour("invalid_utf8", _frames(b'\xff\xfe{"type": "error"}')),
    Behaviour("json_array", _frames("[1, 2, 3]")),
    Behaviour("json_scalars", _frames("42", "null", "true", '"text"')),
    Behaviour("empty_frame", _frames("")),
    Behaviour("huge_frame", _frames("x" * 1_500_000)),
    Behaviour("huge_valid_transcript", _mid_reply(_j(type="response.output_audio_transcript.delta",
                                                     response_id="r", item_id="i", delta=SAY * 40_000))),
    Behaviour("frame_over_the_limit", _frames("y" * (5 << 20))),  # closed 1009 by the kiosk, reconnects
    Behaviour("deep_array", _frames("[" * 200_000 + "]" * 200_000)),
    Behaviour("deep_object", _frames('{"a":' * 100_000 + "1" + "}" * 100_000)),
    Behaviour("deep_session", _frames(_j(type="session.updated", session=_nested(900)))),
    Behaviour("type_not_a_string", _frames(_j(type=5), _j(type=None), _j(type=["error"]))),
    Behaviour("no_type", _frames(_j(event_id="e1", delta="AAAA"))),
    Behaviour("delta_wrong_type", _mid_reply(_delta(7), _delta(None), _delta(["QUFB"]))),
    Behaviour("response_id_object", _frames(_j(type="response.created", response={"id": {"a": 1}}))),
    Behaviour("usage_wrong_type", _frames(_j(type="response.done", response={"id": "resp_x", "status": "completed",
                                                                             "usage": [1, 2]}))),
    Behaviour("usage_absurd", _frames(_j(type="response.done", response={"id": "resp_y", "status": "completed",
                                                                         "usage": {"input_tokens": 10**30}}))),
    Behaviour("error_is_a_string", _frames(_j(type="error", error=SAY))),
    Behaviour("transcript_wrong_types", _frames(_j(type="conversation.item.input_audio_transcription.completed",
                                                   item_id=5, transcript=7))),
    Behaviour("bad_base64", _mid_reply(_delta("!!!not base64"), _delta("QUJD="))),
    Behaviour("odd_length_pcm", _mid_reply(_delta("QUJD"), _delta("QQ=="))),
    Behaviour("audio_for_unknown_ids", _mid_reply(_delta("AAAA", "resp_unknown", "item_unknown"))),
]

FLOODS = [
    Behaviour("flood_rate_limits", _repeat(_j(type="rate_limits.updated", rate_limits=[]), 5000)),
    Behaviour("flood_unknown_events", _repeat(_j(type="response.brand_new_thing", x=SAY), 5000)),
    Behaviour("flood_errors", _repeat(_error("invalid_value"), 2000)),
    Behaviour("flood_transcript_deltas", lambda: Faults(inject_mid_reply=[
        _j(type="response.output_audio_transcript.delta", response_id="r", item_id="i", delta="a ")] * 5000)),
]

ORDER = [
    Behaviour("done_before_created", _frames(_j(type="response.done", response={"id": "resp_z", "status": "completed",
                                                                                "output": []}))),
    Behaviour("created_twice", _mid_reply(_j(type="response.created", response={"id": "resp_second"}),
                                          _j(type="response.created", response={"id": "resp_third"}))),
    Behaviour("speech_stopped_first", _frames(_j(type="input_audio_buffer.speech_stopped", audio_end_ms=10,
                                                 item_id="item_never_started"))),
    Behaviour("truncated_unknown_item", _frames(_j(type="conversation.item.truncated", item_id="nope",
                                                   content_index=0, audio_end_ms=5))),
    Behaviour("transcript_for_unknown_item", _frames(_j(type="response.output_audio_transcript.done",
                                                        item_id="nope", transcript=SAY))),
    Behaviour("call_for_unknown_response", _frames(_j(type="response.function_call_arguments.done",
                                                      response_id="resp_ghost", item_id="fc_ghost", call_id="c_ghost",
                                                      name="noSuchTool", arguments=SAY))),
    Behaviour("response_never_finishes", lambda: Faults(stall_responses=1), Outcome.RECOVERS),
]

# Every error code the service sends in an ``error`` event (and the ones it might).
ERROR_CODES = ["invalid_value", "unknown_parameter", "missing_required_parameter", "invalid_type",
               "item_not_found", "input_audio_buffer_commit_empty", "string_above_max_length",
               "response_cancel_not_active", "conversation_already_has_active_response",
               "rate_limit_exceeded", "server_error", "session_expired", "some_future_code"]  # fmt: skip
FATAL_ERROR_CODES = ["invalid_api_key", "insufficient_quota", "model_not_found"]
ERRORS = [
    *(Behaviour(f"error_{code}", _frames(_error(code))) for code in ERROR_CODES),
    *(Behaviour(f"error_{code}", _frames(_error(code)), Outcome.FATAL) for code in FATAL_ERROR_CODES),
    *(Behaviour(f"response_failed_{code}", lambda code=code: Faults(response_failures=[code]))  # type: ignore[misc]
      for code in ("inference_rate_limit_exceeded", "server_error", "max_output_tokens", "content_filter")),
    Behaviour("response_failed_insufficient_quota", lambda: Faults(response_failures=["insufficient_quota"]),
              Outcome.FATAL),
]

CLOSES = [
    *(Behaviour(f"close_{code}", lambda code=code: Faults(close_after_update=(code, "chaos")))  # type: ignore[misc]
      for code in (1000, 1001, 1008, 1011, 3000, 4000)),
    Behaviour("close_3000_invalid_key", lambda: Faults(close_after_update=(3000, "invalid_request_error."
                                                                                 "invalid_api_key")), Outcome.FATAL),
    Behaviour("tcp_reset_mid_reply", lambda: Faults(reset_after_deltas=3), Outcome.RECOVERS),
    Behaviour("drop_mid_reply", lambda: Faults(drop_after_deltas=2), Outcome.RECOVERS),
]

# Behaviours on every connection: the kiosk cannot get a usable session at all.
NEVER_READY = [
    Behaviour("handshake_never_answered", lambda: Faults(hang_handshake=True), Outcome.OFFLINE),
    Behaviour("session_updated_never_sent", lambda: Faults(misbehave="silent"), Outcome.OFFLINE),
    Behaviour("expiry_before_ready", lambda: Faults(misbehave="expire_at_once"), Outcome.OFFLINE),
    Behaviour("expiry_when_configured", lambda: Faults(misbehave="expire_when_configured"), Outcome.OFFLINE),
    Behaviour("garbage_then_close_always", lambda: Faults(misbehave="garbage_then_close"), Outcome.OFFLINE),
    Behaviour("reset_at_once_always", lambda: Faults(misbehave="drop_at_once"), Outcome.OFFLINE),
    Behaviour("http_503", lambda: Faults(http_status=503), Outcome.OFFLINE),
    Behaviour("http_401", lambda: Faults(http_status=401), Outcome.FATAL),
]

CATALOGUE: list[Behaviour] = [*FRAMES, *FLOODS, *ORDER, *ERRORS, *CLOSES, *NEVER_READY]
BY_NAME = {b.name: b for b in CATALOGUE}
