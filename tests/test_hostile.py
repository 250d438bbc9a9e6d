"""No frame can end the daemon or a visit, and no server behaviour makes a reconnect storm
(issue 14, part C).

* Every server event type of a real-shaped session (recorded from the simulator, the few it
  never sends written by hand, all validated against the official models) is mutated by
  hypothesis (wrong types anywhere, missing keys, deep nesting, sizes, invalid base64,
  odd-length PCM, unknown ids, broken JSON, binary) and fed into a session core in the
  middle of a conversation: no exception escapes, and none reaches the core's last resort.
* End to end, hostile frames hit the warm standby and a visit: the daemon keeps serving
  the next visitor.
* Whatever a misbehaving service does, the kiosk makes at most 20 connection attempts a
  minute.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk import conversation as cv
from kiosk.config import RealtimeSettings
from kiosk.realtime import events as ev
from kiosk.realtime import session as rs
from kiosk.sim.options import MISBEHAVIOURS
from kiosk.sim.rig import Rig
from kiosk.sim.scenario import load_scenario
from kiosk.sim.server import Faults, Habits
from tests import oracle
from tests.test_sim_service import SESSION, SPEECH, service
from tests.toolkit import CHECKOUT_CONFIG

HAPPY = load_scenario("happy_path")
GREETED = {cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING}
CFG = rs.SessionConfig(RealtimeSettings(), instructions="Be brief.",
                       tools=({"type": "function", "name": "analyzeDeal", "description": "d",
                               "parameters": {"type": "object", "properties": {}}},))

# -- a real-shaped session ----------------------------------------------------------------

HANDWRITTEN: list[dict[str, Any]] = [
    {"type": "conversation.item.created", "event_id": "e1", "previous_item_id": None,
     "item": {"id": "item_u", "type": "message", "role": "user", "status": "completed", "object": "realtime.item",
              "content": [{"type": "input_audio", "transcript": None}]}},
    {"type": "conversation.item.input_audio_transcription.segment", "event_id": "e2", "item_id": "item_u",
     "content_index": 0, "id": "seg_1", "start": 0.0, "end": 1.2, "speaker": "A", "text": "hello"},
    {"type": "response.output_text.delta", "event_id": "e3", "response_id": "resp_t", "item_id": "item_t",
     "output_index": 0, "content_index": 0, "delta": "Hi"},
    {"type": "response.output_text.done", "event_id": "e4", "response_id": "resp_t", "item_id": "item_t",
     "output_index": 0, "content_index": 0, "text": "Hi there"},
]


async def _record() -> list[dict[str, Any]]:
    habits = Habits(rate_limits=True, transcript_deltas=True, cached_fraction=0.3)
    async with service(habits=habits, faults=Faults(fail_transcription_turns=[1])) as (sim, c):
        await c.send("response.create")
        await c.until("response.done")  # the greeting: audio, transcript, content parts
        await c.speak(SPEECH)
        call = await c.until("response.function_call_arguments.done")
        await c.until("response.done")
        await c.send("conversation.item.create",
                     item={"type": "function_call_output", "call_id": call["call_id"], "output": "{}"})
        await c.send("response.create")
        await c.until("response.done")
        item = [e["item"]["id"] for e in c.events if e["type"] == "response.output_item.done"][-1]
        for etype, done in (("conversation.item.truncate", "conversation.item.truncated"),
                            ("conversation.item.retrieve", "conversation.item.retrieved"),
                            ("conversation.item.delete", "conversation.item.deleted")):
            extra = {"content_index": 0, "audio_end_ms": 100} if etype.endswith("truncate") else {}
            await c.send(etype, item_id=item, **extra)
            await c.until(done)
        await c.send("input_audio_buffer.clear")
        await c.until("input_audio_buffer.cleared")
        await c.send("response.cancel")
        await c.until("error")
        await c.speak(SPEECH)  # turn 1: its transcription fails
        await c.until("conversation.item.input_audio_transcription.failed")
        await c.until("response.done")
        idle = {**SESSION, "audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}}}
        await c.send("session.update", session=idle)
        await c.until("session.updated")
        await c.speak(b"", then_silence_ms=12000)
        await c.until("input_audio_buffer.timeout_triggered")
    return [*sim.sessions[0].sent, *HANDWRITTEN]


@cache
def samples() -> dict[str, dict[str, Any]]:
    """One recorded event per server type the core knows, plus its beta alias."""
    recorded = asyncio.run(_record())
    by_type: dict[str, dict[str, Any]] = {}
    for event in recorded:
        by_type.setdefault(event["type"], event)
    for beta, ga in ev.BETA_ALIASES.items():
        by_type[beta] = {**by_type[ga], "type": beta}
    return by_type


def test_the_samples_cover_every_server_event_type_and_are_official() -> None:
    found = samples()
    missing = (set(ev.SERVER_EVENTS) | set(ev.BETA_ALIASES)) - set(found)
    assert missing == set()
    for etype, event in found.items():
        if etype not in ev.BETA_ALIASES:
            oracle.check(oracle.SERVER, event)


# -- mutations ------------------------------------------------------------------------------

def nested(depth: int) -> Any:
    node: Any = "x"
    for _ in range(depth):
        node = [node]
    return node


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["!!not base64!!", "QQ==", "QUJD", "", "item_unknown", "resp_unknown", "failed", "completed"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    st.integers(min_value=1, max_value=300).map(nested), st.integers(0, 300_000).map(lambda n: "A" * n),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out.append((*prefix, key))
        out += paths(value, (*prefix, key))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> str | bytes:
    """A real event with one to three mutations, or a broken frame made from one."""
    table = samples()
    event = copy.deepcopy(table[draw(st.sampled_from(sorted(table)))])
    for _ in range(draw(st.integers(1, 3))):
        where = paths(event)
        op = draw(st.sampled_from(["replace", "replace", "delete", "retype", "add"]))
        if op == "retype":
            event["type"] = draw(st.sampled_from(sorted(table)))
        elif op == "add":
            event[draw(st.text(max_size=8))] = draw(VALUES)
        elif where:
            path = draw(st.sampled_from(where))
            parent = event
            for key in path[:-1]:
                parent = parent[key]
            if op == "delete":
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(VALUES)
    text = json.dumps(event)
    frame = draw(st.sampled_from(["json", "json", "json", "cut", "deep", "bytes"]))
    if frame == "cut":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if frame == "deep":
        depth = draw(st.sampled_from([100, 900, 5000, 200_000]))
        return "[" * depth + text + "]" * depth
    if frame == "bytes":
        return draw(st.sampled_from([text.encode(), b"\xff\xfe" + text.encode()]))
    return text


def primed() -> rs.RealtimeSession:
    """A core in the middle of a conversation: a response streaming audio, a tool call pending."""
    core = rs.RealtimeSession(CFG)
    core.start()
    core.receive(json.dumps({"type": "session.updated", "session": {}}), 0.0)
    core.receive(json.dumps({"type": "response.created", "response": {"id": "resp_1"}}), 0.1)
    pcm = base64.b64encode(bytes(960)).decode()
    core.receive(json.dumps({"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_1",
                             "output_index": 0, "content_index": 0, "delta": pcm}), 0.2)
    core.receive(json.dumps({"type": "response.function_call_arguments.done", "response_id": "resp_1",
                             "item_id": "fc_1", "output_index": 1, "call_id": "call_1", "name": "analyzeDeal",
                             "arguments": "{}"}), 0.3)
    core.drain()
    return core


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(frames=st.lists(mutated(), min_size=1, max_size=4))
def test_no_mutated_frame_escapes_the_session_core(frames: list[str | bytes], caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    core = primed()
    for n, frame in enumerate(frames):
        core.receive(frame, 1.0 + n)
    # The core still works: it takes tool output, a flush, a request, and plays new audio.
    core.playback_flushed({"item_1": 10.0})
    core.tool_results([("call_1", "{}")])
    core.request_response("Say goodbye.")
    core.drain()
    pcm = base64.b64encode(bytes(96)).decode()
    fresh = json.dumps({"type": "response.output_audio.delta", "response_id": "resp_9", "item_id": "item_fresh",
                        "output_index": 0, "content_index": 0, "delta": pcm})
    assert rs.PlayAudio("item_fresh", bytes(96)) in core.receive(fresh, 99.0)
    last_resort = [r for r in caplog.records if "could not be handled" in r.getMessage()]
    assert last_resort == [], [r.getMessage() for r in last_resort]


# -- end to end: the standby and a visit survive hostile frames ---------------------------------

HOSTILE: list[str | bytes] = [
    json.dumps({"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "output_index": 0,
                "content_index": 0, "delta": "!!!not base64"}),
    json.dumps({"type": "response.output_audio.delta", "response_id": "r", "item_id": "i_odd", "output_index": 0,
                "content_index": 0, "delta": "QUJD"}),  # three bytes: odd-length PCM
    "[" * 200_000 + "]" * 200_000,  # deep nesting
    json.dumps({"type": "session.updated", "session": nested(900)}),
    json.dumps({"type": "response.done", "response": {"id": "resp_x", "status": "completed", "usage": [1, 2]}}),
    json.dumps({"type": "response.created", "response": {"id": {"a": 1}}}),
    json.dumps({"type": "response.done", "response": {"id": "resp_y", "status": "failed",
                                                      "status_details": {"error": "boom"}}}),
    json.dumps({"type": "error", "error": "boom"}),
    json.dumps({"type": "conversation.item.input_audio_transcription.completed", "item_id": 5, "transcript": 7}),
    json.dumps({"type": "response.output_audio_transcript.done", "item_id": "nope", "transcript": "hi"}),
    b"\x00\x01 binary",
    "x" * 1_500_000,  # larger than any real event, smaller than the WebSocket limit
]


async def test_hostile_frames_end_neither_the_daemon_nor_a_visit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    faults = Faults(inject_on_connect=HOSTILE, inject_mid_reply=HOSTILE)
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, faults=faults)
    async with rig.running():
        for _ in range(2):  # the daemon keeps serving the next visitor
            await rig.press(until=GREETED)
            visit = rig.kiosk.visit
            assert visit is not None and visit.was_warm  # the standby survived them too
            await rig.assistant_turn()
            await rig.press(until={cv.State.IDLE})
    assert rig.rec.ended == [cv.EndReason.BUTTON, cv.EndReason.BUTTON]
    assert rig.rec.lines[0] == ("assistant", HAPPY.greeting.say)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_frame_over_the_websocket_limit_is_a_drop_the_kiosk_recovers_from(tmp_path: Path) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, faults=Faults(inject_frames=["x" * (5 << 20)]),
              overrides={"realtime": {"backoff_base_s": 0.05, "backoff_cap_s": 0.2}})
    async with rig.running():
        await rig.sim.wait_for_session(2, limit_s=10)  # the standby's first connection was closed (1009)
        await rig.press(until=GREETED)
        await rig.assistant_turn()
        await rig.press(until={cv.State.IDLE})
    assert rig.rec.lines[0] == ("assistant", HAPPY.greeting.say)


# -- no reconnect storm ----------------------------------------------------------------------------

async def _attempts_within(rig: Rig, seconds: float, cap: int) -> int:
    """Connection attempts (HTTP upgrades) seen in ``seconds`` of wall time (stops early past ``cap``)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end and len(rig.sim.auth_headers) <= cap:  # noqa: ASYNC110 - an observation window
        await asyncio.sleep(0.02)
    return len(rig.sim.auth_headers)


@pytest.mark.parametrize("mode", [*MISBEHAVIOURS, "http_503"])
async def test_no_server_behaviour_gets_more_than_20_connection_attempts_a_minute(tmp_path: Path, mode: str) -> None:
    # Backoff all but off: only the kiosk's connection gate stands between a misbehaving
    # service and a storm.
    faults = Faults(http_status=503) if mode == "http_503" else Faults(misbehave=mode)
    overrides = {"realtime": {"backoff_base_s": 0.001, "backoff_cap_s": 0.002},
                 "session": {"connect_timeout_s": 30.0}}
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, faults=faults, overrides=overrides)
    async with rig.running():
        rig.kiosk.submit(cv.ButtonPressed())  # a visitor walks up during the trouble
        attempts = await _attempts_within(rig, 3.0, cap=40)
    assert 1 <= attempts <= 20


@pytest.mark.parametrize("mode", ["expire_at_once", "expire_when_configured"])
async def test_an_expiry_at_or_before_configuration_is_not_a_reconnect_storm(tmp_path: Path, mode: str) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, faults=Faults(misbehave=mode))
    async with rig.running():
        rig.kiosk.submit(cv.ButtonPressed())
        attempts = await _attempts_within(rig, 3.0, cap=200)
    assert attempts <= 20
