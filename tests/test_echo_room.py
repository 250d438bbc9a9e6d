"""The echo policy in a simulated room: the assistant's voice comes back into the microphone
at -6 dB, 30 ms late. In ``gate`` mode the simulator's VAD (the stand-in for the server's)
must never hear the assistant as a visitor, yet a visitor speaking over it still interrupts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kiosk import conversation as cv
from kiosk.audio.pcm import apply_gain, read_wav, write_wav
from kiosk.sim.rig import Rig
from kiosk.sim.room import Room
from kiosk.sim.scenario import SCENARIOS, Reply, Scenario, Turn
from tests.toolkit import CHECKOUT_CONFIG

pytestmark = pytest.mark.timeout(90)
AUDIO = SCENARIOS / "audio"


def long_reply(tmp_path: Path) -> Reply:
    """About 34 s of the assistant's recorded voice, pauses between sentences included."""
    names = ("happy_a0_greeting", "happy_a1", "happy_a2", "happy_a4")
    pcm = b"".join(read_wav(AUDIO / f"{name}.wav") for name in names)
    path = tmp_path / "long.wav"
    write_wav(path, pcm)
    return Reply("A long explanation of our loan programs.", path)


def scenario(tmp_path: Path) -> Scenario:
    return Scenario(
        name="echo",
        greeting=long_reply(tmp_path),
        turns=(Turn("Can I ask something?", reply=Reply("Of course.")),),
    )


async def test_gate_mode_does_not_let_the_assistant_interrupt_itself(tmp_path: Path) -> None:
    rig = Rig(scenario(tmp_path), tmp_path, config=CHECKOUT_CONFIG, speed=4, room=Room(-6.0, 30), record=True)
    async with rig.running():
        assert rig.settings.echo.mode == "gate"  # the default
        await rig.press()
        async with asyncio.timeout(60):
            await rig.rec.playback_started.wait()
            rig.rec.playback_done.clear()
            await rig.rec.playback_done.wait()
        sim = rig.sim.sessions[0]
        greeting = next(e["item"]["id"] for e in sim.sent if e["type"] == "response.output_item.added")
        heard = rig.speaker.played_ms(greeting)
        echo_reached_mic = max(abs(b) for b in rig.room.played[::2]) if rig.room else 0
        await rig.press(until={cv.State.IDLE})
    assert heard > 30_000, "the whole reply played"
    assert echo_reached_mic > 0
    assert not [e for e in sim.sent if e["type"] == "input_audio_buffer.speech_started"]
    assert not [e for e in sim.received if e["type"] == "conversation.item.truncate"]
    assert rig.kiosk.echo.gated_chunks > 100
    assert cv.Pattern.VISITOR_SPEAKING not in rig.lights.shown, "the echo does not light the visitor LED"


async def test_a_visitor_speaking_over_the_echo_still_barges_in(tmp_path: Path) -> None:
    rig = Rig(scenario(tmp_path), tmp_path, config=CHECKOUT_CONFIG, speed=4, room=Room(-6.0, 30), record=True)
    visitor = apply_gain(read_wav(AUDIO / "happy_v1.wav"), 6.0)  # close to the array
    async with rig.running():
        await rig.press()
        await rig.talk_over(5000, visitor, limit_s=60)
        await rig.assistant_turn()
        sim = rig.sim.sessions[0]
        await rig.press(until={cv.State.IDLE})
    started = [e for e in sim.sent if e["type"] == "input_audio_buffer.speech_started"]
    (trunc,) = [e for e in sim.received if e["type"] == "conversation.item.truncate"]
    assert started
    assert cv.Pattern.VISITOR_SPEAKING in rig.lights.shown, "the local VAD lit the visitor LED"
    assert 4_000 < trunc["audio_end_ms"] < 12_000, "interrupted soon after the visitor began, not at the end"
