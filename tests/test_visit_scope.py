"""Each visit gets its own tool scope: work finishing for the last visitor never reaches the next."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from kiosk import conversation as cv
from kiosk.sim.rig import Rig
from kiosk.sim.scenario import load_scenario
from kiosk.tools.registry import Tool, ToolContext
from tests.toolkit import CHECKOUT_CONFIG

pytestmark = pytest.mark.timeout(60)
LISTENING = {cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING}


class _NoArgs(BaseModel):
    pass


async def test_a_tool_finishing_after_its_visit_ended_cannot_touch_the_next_visit(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()

    def late_save(args: _NoArgs, ctx: ToolContext) -> dict[str, Any]:
        # Like a saveLead stuck on a slow SD card: it finishes in its worker thread long
        # after the visitor walked away, and then records what it saved in its scope.
        started.set()
        release.wait(10)
        ctx.lead_ids.add("late-lead")
        ctx.transcript.append(("visitor", "words of the last visitor"))
        return {"saved": True}

    rig = Rig(load_scenario("happy_path"), tmp_path, speed=4, config=CHECKOUT_CONFIG)
    async with rig.running():
        kiosk = rig.kiosk
        # The kiosk's own registry, with one more tool (the registry's tools are a public table).
        kiosk.tools.tools["lateSave"] = Tool("lateSave", "test", _NoArgs, late_save)
        await rig.press(until=LISTENING)
        first = kiosk.visit
        assert first is not None
        call = asyncio.create_task(kiosk.tools.call("lateSave", "{}", first.scope))
        assert await asyncio.wait_for(asyncio.to_thread(started.wait, 10), 15)
        await rig.press(until={cv.State.IDLE})  # the visitor ends the visit mid-save
        await rig.press(until=LISTENING)  # and the next one walks up
        second = kiosk.visit
        assert second is not None and second is not first
        assert second.scope is not first.scope and kiosk.scope is second.scope
        release.set()
        assert json.loads(await asyncio.wait_for(call, 15)) == {"saved": True}
        assert "late-lead" not in second.scope.lead_ids
        assert ("visitor", "words of the last visitor") not in second.scope.transcript
        assert first.scope.closed and not second.scope.closed
        await rig.press(until={cv.State.IDLE})
