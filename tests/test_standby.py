"""Warm standby: a configured connection waits for the next visitor, is replaced when it
gets old or drops, and is what a press uses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kiosk import conversation as cv
from kiosk.sim.rig import Rig
from kiosk.sim.scenario import load_scenario
from tests.toolkit import CHECKOUT_CONFIG

pytestmark = pytest.mark.timeout(60)
HAPPY = load_scenario("happy_path")


async def test_a_press_takes_the_warm_connection_and_greets_without_a_handshake(tmp_path: Path) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=4, record=True)
    async with rig.running():
        await rig.press()
        await rig.assistant_turn()
        visit = rig.kiosk.visit
        assert visit is not None and visit.was_warm
        await rig.press(until={cv.State.IDLE})
        standby = rig.kiosk.standby
        assert standby is not None
        async with asyncio.timeout(10):
            await standby.ready_event.wait()  # the next visitor's connection, opened after the end
    visitor, nxt = rig.sim.sessions[0], rig.sim.sessions[1]
    assert any(e["type"] == "response.create" for e in visitor.received)
    assert [e["type"] for e in nxt.received] == ["session.update"]  # configured, then parked
    assert len(rig.kiosk.first_audio_ms) == 1


async def test_an_old_standby_is_replaced_before_the_service_would_end_it(tmp_path: Path) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=4, overrides={"realtime": {"recycle_after_s": 0.3}})
    async with rig.running():
        standby = rig.kiosk.standby
        assert standby is not None
        async with asyncio.timeout(20):
            while standby.opened < 3:  # noqa: ASYNC110 - a counter, no event to await
                await asyncio.sleep(0.05)
        sessions = list(rig.sim.sessions)
        async with asyncio.timeout(10):
            for old in sessions[:-2]:
                await old.closed.wait()  # the replaced ones were closed, not leaked


async def test_a_dropped_standby_is_reopened(tmp_path: Path) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=4)
    async with rig.running():
        standby = rig.kiosk.standby
        assert standby is not None
        async with asyncio.timeout(10):
            await standby.ready_event.wait()
        first = rig.sim.sessions[0]
        first.ws.transport.abort()  # the network drops the parked connection
        async with asyncio.timeout(20):
            while standby.opened < 2 or not standby.ready:  # noqa: ASYNC110 - a counter, no event to await
                await asyncio.sleep(0.05)
        await rig.press(until={cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING})
        await rig.assistant_turn()
        await rig.press(until={cv.State.IDLE})
    assert len(rig.sim.sessions) >= 2
