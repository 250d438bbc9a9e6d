"""The whole kiosk against the simulator with faults injected: drops, bad keys, expiry,
garbage frames, barge-in. Real WebSocket, real SQLite; audio from files."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from kiosk import conversation as cv
from kiosk.audio.pcm import read_wav
from kiosk.sim.rig import Rig
from kiosk.sim.scenario import load_scenario
from kiosk.sim.server import Faults
from tests.toolkit import CHECKOUT_CONFIG, barge_rig

FAST = {"realtime": {"backoff_base_s": 0.05, "backoff_cap_s": 0.2}}
HAPPY = load_scenario("happy_path")
SPEECH = read_wav(HAPPY.turns[0].visitor_audio)  # type: ignore[arg-type]


def kiosk_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("kiosk") and r.levelno >= logging.ERROR]


def states(rig: Rig) -> list[cv.Pattern]:
    return rig.lights.shown


async def test_drop_mid_reply_reconnects_and_the_session_continues(tmp_path: Path) -> None:
    rig = Rig(HAPPY, tmp_path, speed=10, overrides=FAST, faults=Faults(drop_after_deltas=3), record=True,
              config=CHECKOUT_CONFIG)
    async with rig.running():
        await rig.press(until={cv.State.CONNECTING})
        # The greeting is cut after three deltas (before the visitor speaks: a visitor who
        # talked over it would cancel it first); the kiosk reconnects...
        second = await rig.sim.wait_for_session(2, limit_s=10)
        async with asyncio.timeout(10):
            await second.configured.wait()
        # ...and comes back without greeting again.
        await rig.kiosk.wait_state({cv.State.LISTENING}, limit_s=10)
        await rig.pause(300)
        await rig.say(SPEECH)
        await rig.assistant_turn()
        await rig.press(until={cv.State.IDLE})
    assert len(rig.sim.sessions) == 2
    second = rig.sim.sessions[1].received
    assert second[0]["type"] == "session.update"
    assert sum(1 for e in second if e["type"] == "response.create") == 0  # no second greeting
    assert rig.rec.lines[-1] == ("assistant", HAPPY.turns[0].reply.say)  # type: ignore[union-attr]
    assert cv.Pattern.CONNECTING in states(rig)[2:]


async def test_reconnect_that_fails_ends_offline(tmp_path: Path) -> None:
    faults = Faults(drop_after_deltas=3)
    rig = Rig(HAPPY, tmp_path, speed=10, overrides={**FAST, "session": {"connect_timeout_s": 1.0}}, faults=faults,
              config=CHECKOUT_CONFIG)
    async with rig.running():
        await rig.press()
        await rig.kiosk.wait_state({cv.State.CONNECTING}, limit_s=5)
        await rig.kiosk.wait_state({cv.State.LISTENING}, limit_s=5)
        faults.http_status = 503  # the service stays down from now on
        faults.drop_after_deltas = 1
        await rig.say(SPEECH)
        await rig.kiosk.wait_state({cv.State.OFFLINE}, limit_s=10)
    assert rig.rec.ended[-1] is cv.EndReason.CONNECTION_LOST


@pytest.mark.parametrize("fault", [Faults(reject_key=True), Faults(reject_with_close_3000=True),
                                   Faults(http_status=401)], ids=["error-event", "close-3000", "http-401"])
async def test_invalid_key_is_fatal_once_without_retry(tmp_path: Path, fault: Faults,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, overrides=FAST, faults=fault)
    async with rig.running():
        await rig.press(until={cv.State.ERROR}, limit_s=10)
        await rig.press()  # pressing again must not reconnect
        await rig.press()
        await rig.kiosk.wait_state({cv.State.ERROR}, limit_s=1)
    attempts = len(rig.sim.auth_headers)
    assert attempts == 1
    errors = kiosk_errors(caplog)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "refused" in errors[0].getMessage()


async def test_session_expired_is_recycled_with_the_conversation(tmp_path: Path) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, overrides=FAST, record=True)
    async with rig.running():
        await rig.press(until={cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING})
        await rig.assistant_turn()
        await rig.say(SPEECH)
        await rig.assistant_turn()
        rig.sim.sessions[0].expire()  # the service's 60-minute limit, now
        second = await rig.sim.wait_for_session(2, limit_s=5)
        await second.configured.wait()
        await rig.pause(300)
        await rig.say(read_wav(HAPPY.turns[1].visitor_audio))  # type: ignore[arg-type]
        await rig.assistant_turn()
    replay = [e for e in second.received if e["type"] == "conversation.item.create"]
    assert replay and replay[0]["item"]["role"] == "system"
    assert HAPPY.turns[0].visitor in replay[0]["item"]["content"][0]["text"]
    assert any(e["type"] == "input_audio_buffer.append" for e in second.received)
    assert cv.Pattern.CONNECTING not in rig.lights.shown[3:]  # invisible to the visitor


async def test_connection_is_recycled_before_the_limit_at_a_quiet_moment(tmp_path: Path) -> None:
    rig = Rig(HAPPY, tmp_path, speed=10, overrides={"realtime": {"recycle_after_s": 0.2}}, record=True,
              config=CHECKOUT_CONFIG)
    async with rig.running():
        await rig.press(until={cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING})
        await rig.assistant_turn()  # the greeting is never cut: recycling waits for quiet
        second = await rig.sim.wait_for_session(2, limit_s=5)
        await second.configured.wait()
    first = rig.sim.sessions[0]
    assert not any(e["type"] == "response.done" and e["response"]["status"] == "cancelled" for e in first.sent)
    assert rig.rec.lines[0] == ("assistant", HAPPY.greeting.say)


async def test_malformed_and_unknown_server_events_are_logged_and_skipped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames = ["{not json", json.dumps({"type": "response.output_audio.delta", "delta": 7}),
              json.dumps({"type": "response.brand_new_event", "x": 1}), json.dumps([1, 2, 3])]
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, faults=Faults(inject_frames=frames))
    caplog.set_level(logging.DEBUG, logger="kiosk")
    async with rig.running():
        await rig.press(until={cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING})
        await rig.assistant_turn()
        await rig.press(until={cv.State.IDLE})
    skipped = [r for r in caplog.records if "malformed server event skipped" in r.getMessage()]
    assert len(skipped) == 3
    assert any("unknown server event" in r.getMessage() for r in caplog.records)
    assert rig.rec.lines[0] == ("assistant", HAPPY.greeting.say)


async def test_barge_in_stops_playback_and_truncates_to_what_was_played(tmp_path: Path) -> None:
    rig = barge_rig(tmp_path)
    async with rig.running():
        await rig.press()
        await rig.talk_over(1500, SPEECH, limit_s=10)
        await rig.assistant_turn()
        sim = rig.sim.sessions[0]
        (trunc,) = [e for e in sim.received if e["type"] == "conversation.item.truncate"]
        greeting = trunc["item_id"]
        played = rig.speaker.played_ms(greeting)  # what the speaker port says the visitor heard
        await rig.press(until={cv.State.IDLE})
    assert abs(trunc["audio_end_ms"] - played) <= 20
    # Barge-in came 1.5 s in: well short of the ~13 s greeting, and the server accepted it.
    assert 1400 < trunc["audio_end_ms"] < 4000
    assert sim.audio_ms[greeting] == trunc["audio_end_ms"]  # the simulator truncated its copy
    assert not [e for e in sim.sent if e["type"] == "error"]
    cancelled = [e for e in sim.sent if e["type"] == "response.done" and e["response"]["status"] == "cancelled"]
    assert cancelled and cancelled[0]["response"]["status_details"]["reason"] == "turn_detected"
    assert not [e for e in sim.received if e["type"] == "response.cancel"]  # the server interrupts by itself
