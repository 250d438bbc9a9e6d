"""The sans-I/O Realtime session core on scripted JSON and a manual clock."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from kiosk.config import RealtimeSettings
from kiosk.realtime import session as rs

CFG = rs.SessionConfig(RealtimeSettings(model="gpt-realtime", voice="marin"), instructions="Be brief.",
                       tools=({"type": "function", "name": "analyzeDeal", "description": "d",
                               "parameters": {"type": "object", "properties": {}}},))


def frame(**event: Any) -> str:
    return json.dumps(event)


def audio(item: str, ms: int, rid: str = "resp_1") -> str:
    pcm = bytes(ms * 48)
    return frame(type="response.output_audio.delta", response_id=rid, item_id=item, output_index=0,
                 content_index=0, delta=base64.b64encode(pcm).decode())


def started() -> rs.RealtimeSession:
    s = rs.RealtimeSession(CFG)
    s.start()
    s.drain()
    assert s.receive(frame(type="session.updated", session={}), 0.0) == [rs.Ready()]
    return s


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_session_update_is_ga_shaped() -> None:
    s = rs.RealtimeSession(CFG)
    s.start()
    (update,) = s.drain()
    sess = update["session"]
    assert sess["type"] == "realtime"
    assert sess["output_modalities"] == ["audio"]
    td = sess["audio"]["input"]["turn_detection"]
    assert td["type"] == "server_vad" and td["create_response"] and td["interrupt_response"]
    assert td["idle_timeout_ms"] == 15000
    assert sess["audio"]["input"]["noise_reduction"] == {"type": "far_field"}
    assert sess["audio"]["output"]["voice"] == "marin"
    for beta in ("modalities", "turn_detection", "input_audio_format", "voice", "max_response_output_tokens"):
        assert beta not in sess


def test_audio_is_played_and_counted_per_item() -> None:
    s = started()
    effects = s.receive(audio("item_a", 100), 1.0)
    assert effects == [rs.PlayAudio("item_a", bytes(4800))]


def test_barge_in_truncates_to_what_was_played_clamped_to_received() -> None:
    s = started()
    s.receive(frame(type="response.created", response={"id": "resp_1"}), 0.0)
    s.receive(audio("item_a", 1000), 0.1)
    effects = s.receive(frame(type="input_audio_buffer.speech_started", audio_start_ms=10, item_id="u1"), 0.5)
    assert rs.FlushPlayback() in effects
    s.playback_flushed({"item_a": 420.7})
    (trunc,) = s.drain()
    assert trunc["type"] == "conversation.item.truncate"
    assert trunc["item_id"] == "item_a" and trunc["audio_end_ms"] == 420 and trunc["content_index"] == 0
    # A speaker that reports more than was received is clamped (never "already shorter").
    s.receive(audio("item_b", 300), 1.0)
    s.receive(frame(type="input_audio_buffer.speech_started", audio_start_ms=10, item_id="u2"), 1.1)
    s.playback_flushed({"item_b": 900.0})
    assert s.drain() == []  # played in full: nothing to truncate


def test_barge_in_on_unheard_item_deletes_it() -> None:
    s = started()
    s.receive(audio("item_a", 500), 0.1)
    s.receive(frame(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1"), 0.2)
    s.playback_flushed({"item_a": 0.0})
    assert types(s.drain()) == ["conversation.item.delete"]


def test_no_cancel_when_server_interrupts_itself_but_cancel_otherwise() -> None:
    s = started()
    s.receive(frame(type="response.created", response={"id": "resp_1"}), 0)
    s.receive(frame(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u"), 0)
    assert "response.cancel" not in types(s.drain())
    manual = rs.RealtimeSession(rs.SessionConfig(RealtimeSettings(model="m", voice="v", interrupt_response=False), ""))
    manual.receive(frame(type="response.created", response={"id": "resp_9"}), 0)
    manual.receive(frame(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u"), 0)
    (cancel,) = manual.drain()
    assert cancel["type"] == "response.cancel" and cancel["response_id"] == "resp_9"


def test_committed_never_triggers_a_response_create() -> None:
    s = started()
    s.receive(frame(type="input_audio_buffer.speech_stopped", audio_end_ms=900, item_id="u1"), 0)
    s.receive(frame(type="input_audio_buffer.committed", item_id="u1"), 0)
    s.append_audio(bytes(960))
    assert types(s.drain()) == ["input_audio_buffer.append"]


def call_done(rid: str, call_id: str, name: str = "analyzeDeal", args: str = "{}") -> str:
    return frame(type="response.function_call_arguments.done", response_id=rid, item_id="fc_" + call_id,
                 output_index=0, call_id=call_id, name=name, arguments=args)


def test_tools_wait_for_response_done_and_get_one_response_create() -> None:
    s = started()
    s.receive(frame(type="response.created", response={"id": "r1"}), 0)
    assert s.receive(call_done("r1", "c1"), 0) == []
    assert s.receive(call_done("r1", "c2"), 0) == []
    effects = s.receive(frame(type="response.done", response={"id": "r1", "status": "completed"}), 0)
    run = [e for e in effects if isinstance(e, rs.RunTools)]
    assert [c.call_id for c in run[0].calls] == ["c1", "c2"]
    s.tool_results([("c1", '{"ok": 1}')])
    assert types(s.drain()) == ["conversation.item.create"]  # still waiting for c2
    s.tool_results([("c2", '{"ok": 2}')])
    assert types(s.drain()) == ["conversation.item.create", "response.create"]


def test_tools_of_a_cancelled_response_do_not_run() -> None:
    s = started()
    s.receive(frame(type="response.created", response={"id": "r1"}), 0)
    s.receive(call_done("r1", "c1"), 0)
    effects = s.receive(frame(type="response.done", response={
        "id": "r1", "status": "cancelled", "status_details": {"type": "cancelled", "reason": "turn_detected"}}), 0)
    assert not any(isinstance(e, rs.RunTools) for e in effects)
    assert s.drain() == []


def test_response_create_waits_while_a_response_is_active() -> None:
    s = started()
    s.receive(frame(type="response.created", response={"id": "r1"}), 0)
    s.receive(call_done("r1", "c1"), 0)
    s.receive(frame(type="response.done", response={"id": "r1", "status": "completed"}), 0)
    # The visitor speaks while the tool runs; the server starts its own response.
    s.receive(frame(type="response.created", response={"id": "r2"}), 0)
    s.tool_results([("c1", "{}")])
    assert types(s.drain()) == ["conversation.item.create"]
    s.receive(frame(type="response.done", response={"id": "r2", "status": "completed"}), 0)
    assert types(s.drain()) == ["response.create"]


def test_errors_are_classified_by_code(caplog: pytest.LogCaptureFixture) -> None:
    s = started()
    s.request_response("hi")
    (create,) = s.drain()
    caplog.set_level(logging.DEBUG)
    benign = frame(type="error", error={"type": "invalid_request_error", "code": "response_cancel_not_active",
                                        "message": "x", "event_id": None})
    assert s.receive(benign, 0) == []
    assert s.receive(frame(type="error", error={"type": "invalid_request_error", "code": "invalid_api_key",
                                                "message": "bad"}), 0) == [rs.FatalError("invalid_api_key", "bad")]
    assert s.receive(frame(type="error", error={"type": "invalid_request_error", "code": "session_expired",
                                                "message": "60 min"}), 0) == [rs.Recycle("session_expired")]
    caplog.clear()
    s.receive(frame(type="error", error={"type": "invalid_request_error", "code": "invalid_value",
                                         "message": "nope", "event_id": create["event_id"]}), 0)
    (rec,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "response.create" in rec.getMessage() and create["event_id"] in rec.getMessage()


def test_malformed_and_unknown_events_are_skipped() -> None:
    s = started()
    assert s.receive("{not json", 0) == []
    assert s.receive(frame(type="response.output_audio.delta", delta=5), 0) == []
    assert s.receive(frame(type="some.future.event", x=1), 0) == []
    assert s.receive(json.dumps([1, 2]), 0) == []


def test_beta_names_are_accepted() -> None:
    s = started()
    pcm = base64.b64encode(bytes(96)).decode()
    effects = s.receive(frame(type="response.audio.delta", response_id="r", item_id="i", output_index=0,
                              content_index=0, delta=pcm), 0)
    assert effects == [rs.PlayAudio("i", bytes(96))]


def test_usage_is_summed() -> None:
    s = started()
    usage = {"input_tokens": 100, "output_tokens": 50,
             "input_token_details": {"audio_tokens": 60, "text_tokens": 40, "cached_tokens": 10},
             "output_token_details": {"audio_tokens": 45, "text_tokens": 5}}
    for rid in ("r1", "r2"):
        s.receive(frame(type="response.done", response={"id": rid, "status": "completed", "usage": usage}), 0)
    # Without cached_tokens_details, cached tokens are taken from text first (the cheaper guess).
    assert s.usage == rs.Usage(200, 100, 120, 80, 20, 90, 10, cached_text_tokens=20)


def test_a_goodbye_during_a_response_waits_for_it_or_cuts_it_when_told() -> None:
    s = started()
    s.receive(frame(type="response.created", response={"id": "resp_1"}), 0)
    assert s.request_response("say goodbye") is False  # waits: never two active responses
    assert s.drain() == []
    s.receive(frame(type="response.done", response={"id": "resp_1", "status": "completed"}), 0)
    (create,) = s.drain()
    # The extra line is added to the session's instructions, never sent instead of them.
    assert create["type"] == "response.create" and create["response"]["instructions"] == "Be brief.\n\nsay goodbye"
    s.receive(frame(type="response.created", response={"id": "resp_2"}), 0)
    s.receive(frame(type="response.done", response={"id": "resp_2", "status": "completed"}), 0)
    s.receive(frame(type="response.created", response={"id": "resp_3"}), 0)  # the server's idle check-in
    assert s.interrupt() == []  # nothing of it reached the speaker yet: nothing to flush
    assert s.request_response("the visitor left") is False
    (cancel,) = s.drain()
    assert cancel["type"] == "response.cancel" and cancel["response_id"] == "resp_3"
    s.receive(frame(type="response.done", response={"id": "resp_3", "status": "cancelled"}), 0)
    (create,) = s.drain()
    assert create["response"]["instructions"].endswith("the visitor left")
