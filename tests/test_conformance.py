"""Conformance: what the kiosk sends and what the simulator emits, against the official
``openai`` realtime models; and the official client talking to the simulator."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from kiosk.audio.pcm import read_wav, silence
from kiosk.sim.demo import run_demo
from kiosk.sim.scenario import load_scenario
from kiosk.sim.server import SimOptions, SimServer
from tests import oracle
from tests.toolkit import CHECKOUT_CONFIG

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def demo_events(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every client and server event of one whole demo session."""
    out = io.StringIO()
    workdir = tmp_path_factory.mktemp("demo")
    result = asyncio.run(run_demo("happy_path", workdir, speed=10.0, out=out, record=True, config=CHECKOUT_CONFIG))
    assert result.ok, out.getvalue()
    received = [e for s in result.sim.sessions for e in s.received]
    sent = [e for s in result.sim.sessions for e in s.sent]
    return received, sent


def test_every_client_event_the_kiosk_sends_is_official(demo_events: Any) -> None:
    received, _ = demo_events
    kinds = {e["type"] for e in received}
    assert {"session.update", "input_audio_buffer.append", "response.create", "conversation.item.create"} <= kinds
    for event in received:
        oracle.check(oracle.CLIENT, event)


def test_every_server_event_the_simulator_emits_is_official(demo_events: Any) -> None:
    _, sent = demo_events
    kinds = {e["type"] for e in sent}
    assert {"session.updated", "input_audio_buffer.speech_started", "response.output_audio.delta",
            "response.function_call_arguments.done", "response.done"} <= kinds
    for event in sent:
        oracle.check(oracle.SERVER, event)


@pytest.mark.parametrize("scenario", ["happy_path", "rough_service"])
def test_the_demo_wire_trace_validates_strictly(tmp_path: Path, scenario: str) -> None:
    """``kiosk demo --trace``: every event both ways is official, the unkind service's included."""
    trace = tmp_path / "trace.jsonl"
    r = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(CHECKOUT_CONFIG), "demo", "--speed", "10",
                        "--scenario", scenario, "--workdir", str(tmp_path), "--trace", str(trace)],
                       capture_output=True, text=True, timeout=180, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    kinds = set()
    for e in events:
        oracle.check(oracle.CLIENT if e["dir"] == "out" else oracle.SERVER, e["event"])
        kinds.add(e["event"]["type"])
    assert {"session.update", "response.create", "response.done", "response.output_audio.delta"} <= kinds
    if scenario == "rough_service":
        assert {"rate_limits.updated", "conversation.item.input_audio_transcription.delta",
                "conversation.item.truncate"} <= kinds


def test_oracle_rejects_beta_keys() -> None:
    beta = {"type": "session.update", "session": {"type": "realtime", "modalities": ["audio", "text"]}}
    with pytest.raises(AssertionError, match=r"session\.modalities"):
        oracle.check(oracle.CLIENT, beta)


async def test_simulator_rejects_beta_keys_like_the_service() -> None:
    async with SimServer(SimOptions(scenario=load_scenario("default"), record_sent=True)) as sim:
        client = AsyncOpenAI(base_url=f"http://127.0.0.1:{sim.port}/v1", api_key="test")
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.send({"type": "session.update", "event_id": "evt_beta",  # type: ignore[arg-type]
                             "session": {"type": "realtime", "voice": "marin"}})
            async with asyncio.timeout(5):
                async for event in conn:
                    if event.type == "error":
                        break
        assert event.error.code == "unknown_parameter"
        assert event.error.param == "session.voice"
        assert event.error.event_id == "evt_beta"


async def test_official_client_full_turn_with_function_call() -> None:
    scenario = load_scenario(DATA / "tool_turn.json")
    speech = read_wav(scenario.turns[0].visitor_audio)  # type: ignore[arg-type]
    async with SimServer(SimOptions(scenario=scenario, record_sent=True)) as sim:
        client = AsyncOpenAI(base_url=f"http://127.0.0.1:{sim.port}/v1", api_key="test")
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(session={
                "type": "realtime", "output_modalities": ["audio"],
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}},
                "tools": [{"type": "function", "name": "analyzeDeal", "description": "deal",
                           "parameters": {"type": "object", "properties": {}}}],
            })
            audio = speech + silence(800)
            for off in range(0, len(audio), 1920):
                await conn.input_audio_buffer.append(audio=base64.b64encode(audio[off:off + 1920]).decode())
            seen: list[str] = []
            call = None
            deltas = 0
            async with asyncio.timeout(10):
                async for event in conn:
                    seen.append(event.type)
                    if event.type == "response.function_call_arguments.done":
                        call = event
                    if event.type == "response.done" and call is not None and deltas == 0:
                        await conn.conversation.item.create(item={
                            "type": "function_call_output", "call_id": call.call_id, "output": '{"dscr": 1.21}'})
                        await conn.response.create()
                    if event.type == "response.output_audio.delta":
                        deltas += 1
                    if event.type == "response.done" and deltas:
                        break
    assert call is not None and call.name == "analyzeDeal"
    assert '"purchasePrice": 400000' in call.arguments
    for expected in ("session.updated", "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                     "input_audio_buffer.committed", "response.output_audio.delta",
                     "response.output_audio_transcript.done"):
        assert expected in seen
    errors = [e for e in sim.sessions[0].sent if e["type"] == "error"]
    assert errors == []


async def test_sim_serve_cli_answers_any_client() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kiosk", "sim", "serve", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        url = line.split()[1].split("?")[0]  # "simulator: ws://127.0.0.1:PORT/v1/realtime?model=..."
        base = url.replace("ws://", "http://").removesuffix("/realtime")
        client = AsyncOpenAI(base_url=base, api_key="test")
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(session={"type": "realtime"})
            await conn.response.create()
            async with asyncio.timeout(10):
                async for event in conn:
                    if event.type == "response.done":
                        break
        assert event.response.status == "completed"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
