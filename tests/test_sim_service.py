"""The simulator behaves like the real service, unkind habits included (issue 14, part A).

Each behaviour is behind a setting (``Habits`` or ``Faults``) and is checked here with a
plain WebSocket client; every server event received is validated strictly against the
official ``openai`` models (tests/oracle.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kiosk.audio.pcm import read_wav, silence
from kiosk.sim.scenario import Reply, Scenario, load_scenario
from kiosk.sim.server import Faults, Habits, SimOptions, SimServer
from tests import oracle

pytestmark = pytest.mark.timeout(60)
DATA = Path(__file__).parent / "data"
TOOL_TURN = load_scenario(DATA / "tool_turn.json")
SPEECH = read_wav(TOOL_TURN.turns[0].visitor_audio)  # type: ignore[arg-type]
LONG = Scenario(name="long", greeting=Reply("Welcome! " + "Let me tell you about our loan programs. " * 4),
                turns=TOOL_TURN.turns)
MODEL = "gpt-realtime-2.1"
SESSION: dict[str, Any] = {
    "type": "realtime", "instructions": "You are the kiosk.",
    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": {"model": "gpt-transcribe"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}},
}


class Client:
    """A raw WebSocket client that checks every server event against the official models."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._n = 0

    async def send(self, etype: str, **fields: Any) -> str:
        self._n += 1
        eid = f"evt_test_{self._n}"
        await self.ws.send(json.dumps({"type": etype, "event_id": eid, **fields}))
        return eid

    async def next(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(await self.ws.recv())
        oracle.check(oracle.SERVER, event)
        self.events.append(event)
        return event

    async def until(self, etype: str, limit_s: float = 10, **match: Any) -> dict[str, Any]:
        async with asyncio.timeout(limit_s):
            while True:
                event = await self.next()
                if event["type"] == etype and all(event.get(k) == v for k, v in match.items()):
                    return event

    async def closed(self, limit_s: float = 5) -> tuple[int | None, str]:
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(limit_s):
                while True:
                    await self.next()
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")

    async def speak(self, pcm: bytes, then_silence_ms: int = 800) -> None:
        audio = pcm + silence(then_silence_ms)
        for off in range(0, len(audio), 4800):
            await self.send("input_audio_buffer.append", audio=base64.b64encode(audio[off:off + 4800]).decode())

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def index(self, etype: str, **match: Any) -> int:
        return next(i for i, e in enumerate(self.events)
                    if e["type"] == etype and all(e.get(k) == v for k, v in match.items()))


@contextlib.asynccontextmanager
async def service(scenario: Scenario = TOOL_TURN, *, faults: Faults | None = None, habits: Habits | None = None,
                  model: str = MODEL, configure: bool = True) -> AsyncIterator[tuple[SimServer, Client]]:
    opts = SimOptions(scenario=scenario, faults=faults or Faults(), habits=habits or Habits(), record_sent=True)
    async with SimServer(opts) as sim, connect(f"{sim.url}?model={model}",
                                               additional_headers={"Authorization": "Bearer test"}) as ws:
        client = Client(ws)
        if configure:
            await client.send("session.update", session=SESSION)
            await client.until("session.updated")
        yield sim, client


# -- A1: failed and incomplete responses, rate limits ---------------------------------

@pytest.mark.parametrize(("outcome", "status"), [
    ("insufficient_quota", "failed"), ("inference_rate_limit_exceeded", "failed"), ("server_error", "failed"),
    ("max_output_tokens", "incomplete"), ("content_filter", "incomplete")])
async def test_a_response_fails_or_ends_incomplete_like_the_service(outcome: str, status: str) -> None:
    async with service(faults=Faults(response_failures=[outcome]), habits=Habits(rate_limits=True)) as (_, c):
        await c.send("response.create")
        done = (await c.until("response.done"))["response"]
    assert done["status"] == status
    if status == "failed":
        assert done["status_details"]["error"]["code"] == outcome
        assert done["usage"]["total_tokens"] == 0 and done["output"] == []
    else:
        assert done["status_details"]["reason"] == outcome
        assert done["output"][0]["status"] == "incomplete"
    assert c.index("rate_limits.updated") == c.index("response.created") + 1


# -- A2: input transcription late, as deltas, or failed ---------------------------------

async def test_input_transcription_can_arrive_after_the_response_as_deltas() -> None:
    async with service(habits=Habits(transcript_delay_ms=300, transcript_deltas=True)) as (_, c):
        await c.speak(SPEECH)
        done = await c.until("conversation.item.input_audio_transcription.completed")
    committed = c.index("input_audio_buffer.committed")
    assert c.index("response.created") < c.index("conversation.item.input_audio_transcription.delta")
    assert committed < c.index("response.created")
    assert done["transcript"] == TOOL_TURN.turns[0].visitor
    assert done["usage"]["type"] == "duration"  # gpt-transcribe bills audio seconds


async def test_input_transcription_can_fail() -> None:
    async with service(faults=Faults(fail_transcription_turns=[0])) as (_, c):
        await c.speak(SPEECH)
        failed = await c.until("conversation.item.input_audio_transcription.failed")
    assert failed["item_id"] == c.events[c.index("input_audio_buffer.committed")]["item_id"]
    assert "conversation.item.input_audio_transcription.completed" not in c.types()


# -- A3: values validated like the service ---------------------------------------------

@pytest.mark.parametrize(("session", "code", "param"), [
    ({"audio": {"output": {"voice": "robot"}}}, "invalid_value", "session.audio.output.voice"),
    ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "invalid_value",
     "session.audio.input.format.rate"),
    ({"output_modalities": ["audio", "text"]}, "invalid_value", "session.output_modalities"),
    ({"audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 100}}}},
     "integer_below_min_value", "session.audio.input.turn_detection.idle_timeout_ms"),
    ({"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}}},
     "decimal_above_max_value", "session.audio.input.turn_detection.threshold"),
    ({"audio": {"output": {"speed": 3.0}}}, "decimal_above_max_value", "session.audio.output.speed"),
    ({"max_output_tokens": 0}, "integer_below_min_value", "session.max_output_tokens"),
    ({"audio": {"input": {"transcription": {"model": "whisper-9"}}}}, "invalid_value",
     "session.audio.input.transcription.model"),
    ({"model": "gpt-realtime-1.5"}, "invalid_value", "session.model"),
], ids=["voice", "rate", "modalities", "idle", "threshold", "speed", "max-tokens", "transcription", "model"])
async def test_values_are_validated_with_param_and_event_id(session: dict[str, Any], code: str, param: str) -> None:
    async with service(configure=False) as (sim, c):
        await c.until("session.created")
        eid = await c.send("session.update", session={"type": "realtime", **session})
        error = (await c.until("error"))["error"]
        ok = await c.send("session.update", session=SESSION)  # the session is still there
        await c.until("session.updated")
    assert (error["code"], error["param"], error["event_id"]) == (code, param, eid)
    assert ok and sim.sessions[0].configured.is_set()


@pytest.mark.parametrize(("model", "habits"), [("gpt-realtime-9", Habits()),
                                               ("gpt-realtime", Habits(retired_models=["gpt-realtime"]))],
                         ids=["unknown", "retired"])
async def test_an_unknown_or_retired_model_is_refused(model: str, habits: Habits) -> None:
    async with service(model=model, habits=habits, configure=False) as (_, c):
        code, reason = await c.closed()
    (error,) = [e["error"] for e in c.events]
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert (code, reason) == (3000, "invalid_request_error.model_not_found")


# -- A4: barge-in over a network ------------------------------------------------------

async def test_interrupted_audio_keeps_coming_for_the_tail_and_the_cancel_closes_the_item() -> None:
    async with service(LONG, habits=Habits(cancel_tail_ms=300)) as (_, c):
        await c.send("response.create")
        await c.until("response.output_audio.delta")
        await c.speak(SPEECH, then_silence_ms=0)
        done = (await c.until("response.done"))["response"]
    started = c.index("input_audio_buffer.speech_started")
    late = [e for e in c.events[started:] if e["type"] == "response.output_audio.delta"]
    assert late, "no audio in flight after speech_started"
    assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "turn_detected")
    (item,) = done["output"]
    assert item["status"] == "incomplete" and item["content"][0]["transcript"]
    done_at = c.index("response.done")
    for etype in ("response.output_audio.done", "response.output_audio_transcript.done", "response.content_part.done"):
        assert started < c.index(etype, item_id=item["id"]) < done_at
    item_done = [i for i, e in enumerate(c.events) if e["type"] == "response.output_item.done"]
    assert started < item_done[-1] < done_at


async def test_a_client_cancel_reports_client_cancelled() -> None:
    async with service(LONG) as (_, c):
        await c.send("response.create")
        created = (await c.until("response.created"))["response"]
        await c.until("response.output_audio.delta")
        await c.send("response.cancel", response_id=created["id"])
        done = (await c.until("response.done"))["response"]
    assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "client_cancelled")


# -- A5: real close codes ---------------------------------------------------------------

async def test_a_bad_key_is_an_error_then_close_3000_naming_it() -> None:
    async with service(faults=Faults(reject_key=True), configure=False) as (_, c):
        code, reason = await c.closed()
    assert [e["error"]["code"] for e in c.events] == ["invalid_api_key"]
    assert (code, reason) == (3000, "invalid_request_error.invalid_api_key")


async def test_expiry_is_session_expired_then_close_1001() -> None:
    async with service(faults=Faults(expire_after_s=0.05)) as (_, c):
        code, _ = await c.closed()
    assert c.events[-1]["error"]["code"] == "session_expired"
    assert code == 1001


# -- A6: the idle time-out commits the silence first -------------------------------------

async def test_the_idle_timeout_commits_the_silence_before_its_check_in() -> None:
    session = {**SESSION, "audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}}}
    async with service() as (_, c):
        await c.send("session.update", session=session)
        await c.until("session.updated")
        await c.send("response.create")
        await c.until("response.done")
        await c.speak(b"", then_silence_ms=9000)
        await c.until("response.created")
    t = c.index("input_audio_buffer.timeout_triggered")
    item_id = c.events[t]["item_id"]
    committed = c.index("input_audio_buffer.committed", item_id=item_id)
    added = next(i for i, e in enumerate(c.events) if e["type"] == "conversation.item.added"
                 and e["item"]["id"] == item_id)
    assert c.events[added]["item"]["role"] == "user"
    assert t < committed < added < len(c.events) - 1 and c.events[-1]["type"] == "response.created"


# -- A7: truncation rules ------------------------------------------------------------------

async def test_truncation_only_of_assistant_audio_within_what_the_server_holds() -> None:
    async with service(habits=Habits(server_audio_short_ms=85)) as (sim, c):
        await c.send("conversation.item.create", item={"type": "message", "role": "user",
                                                        "content": [{"type": "input_text", "text": "hi"}]})
        user = (await c.until("conversation.item.added"))["item"]["id"]
        await c.send("response.create")
        await c.until("response.done")
        item = next(e["item"]["id"] for e in c.events if e["type"] == "response.output_item.done")
        have = sim.sessions[0].audio_ms[item]
        errors: dict[str, tuple[str, str]] = {}
        for name, target, end in (("user", user, 100), ("zero", item, 0), ("beyond", item, have)):
            eid = await c.send("conversation.item.truncate", item_id=target, content_index=0, audio_end_ms=end)
            error = (await c.until("error"))["error"]
            errors[name] = (error["message"], error["event_id"] == eid)
        await c.send("conversation.item.truncate", item_id=item, content_index=0, audio_end_ms=have - 100)
        ok = await c.until("conversation.item.truncated")
    only = ("Only model output audio messages can be truncated", True)
    assert errors["user"] == errors["zero"] == only
    assert errors["beyond"] == (f"Audio content of {have - 85}ms is already shorter than {have}ms", True)
    assert ok["audio_end_ms"] == have - 100


# -- A8 and A9: usage details, metadata echoed -----------------------------------------------

async def test_usage_reports_cached_tokens_per_modality_and_metadata_is_echoed() -> None:
    async with service(habits=Habits(cached_fraction=0.5)) as (_, c):
        await c.speak(SPEECH)
        await c.until("response.done")
        await c.send("response.create", response={"metadata": {"client_event_id": "evt_x"}})
        created = (await c.until("response.created"))["response"]
        done = (await c.until("response.done"))["response"]
    assert created["metadata"] == done["metadata"] == {"client_event_id": "evt_x"}
    details = done["usage"]["input_token_details"]
    cached = details["cached_tokens_details"]
    assert cached["text_tokens"] > 0 and cached["audio_tokens"] > 0
    assert details["cached_tokens"] == cached["text_tokens"] + cached["audio_tokens"]
    assert cached["text_tokens"] == details["text_tokens"] // 2


async def test_token_billed_transcription_reports_tokens() -> None:
    session = {**SESSION, "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}}}
    async with service() as (_, c):
        await c.send("session.update", session=session)
        await c.until("session.updated")
        await c.speak(SPEECH)
        done = await c.until("conversation.item.input_audio_transcription.completed")
    assert done["usage"]["type"] == "tokens" and done["usage"]["input_token_details"]["audio_tokens"] > 0


# -- what the kiosk tests rely on: persona kept, refused requests, misbehaviours --------------

async def test_the_simulator_notices_response_instructions_that_drop_the_persona() -> None:
    async with service() as (sim, c):
        kept = await c.send("response.create", response={"instructions": "You are the kiosk.\n\nGreet them."})
        await c.until("response.done")
        lost = await c.send("response.create", response={"instructions": "Greet them."})
        await c.until("response.done")
    assert sim.sessions[0].persona_lost == [lost] and kept != lost


async def test_a_refused_response_create_names_its_event() -> None:
    async with service(faults=Faults(refuse_response_creates=1)) as (_, c):
        eid = await c.send("response.create", response={"instructions": "x"})
        error = (await c.until("error"))["error"]
    assert (error["event_id"], error["param"]) == (eid, "response.instructions")


@pytest.mark.parametrize(("mode", "want"), [
    ("expire_at_once", 1001), ("expire_when_configured", 1001), ("close_3000", 3000),
    ("garbage_then_close", 1000), ("drop_at_once", None), ("silent", "open")])
async def test_misbehaving_service_modes(mode: str, want: int | str | None) -> None:
    async with service(faults=Faults(misbehave=mode), configure=False) as (_, c):
        frames: list[str | bytes] = []
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await c.send("session.update", session=SESSION)
            async with asyncio.timeout(1.0):
                while True:
                    frames.append(await c.ws.recv())
        code = c.ws.protocol.close_rcvd.code if c.ws.protocol.close_rcvd is not None else None
        still_open = c.ws.close_code is None
    assert (("open" if still_open else code) == want) or (want is None and code is None and not still_open)
    assert not any(isinstance(f, str) and '"session.updated"' in f for f in frames) or mode == "expire_when_configured"


def test_a_scenario_sets_the_service_habits(tmp_path: Path) -> None:
    path = tmp_path / "habits.json"
    path.write_text(json.dumps({"name": "h", "service": {"transcript_delay_ms": 1500}}))
    assert Habits(**load_scenario(path).service).transcript_delay_ms == 1500
