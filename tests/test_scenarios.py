"""The walk-up visitor's scenarios, end to end: the real kiosk against the simulator.

Each shipped scenario runs through the demo runner with its outcome asserted here
directly (not only through the runner's own checks): lead saved or not, why each session
ended, the lights shown, the local message the speaker played. (happy_path is run in
tests/test_demo.py.)
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import subprocess
import sys
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import pytest

from kiosk import conversation as cv
from kiosk.audio.pcm import read_wav
from kiosk.runtime.compose import load_instructions
from kiosk.sim.demo import DemoResult, run_demo
from kiosk.sim.rig import Rig
from kiosk.sim.scenario import load_scenario, scenario_names
from kiosk.sim.server import SimSession
from kiosk.tools.leads import disclosure_text
from tests.toolkit import CHECKOUT_CONFIG, checkout_settings

SPEED = 10.0
P = cv.Pattern
GREETED = {cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING}


async def demo(name: str, tmp_path: Path) -> DemoResult:
    out = io.StringIO()
    result = await run_demo(name, tmp_path, speed=SPEED, out=out, config=CHECKOUT_CONFIG)
    assert result.ok, out.getvalue()
    return result


def leads(result: DemoResult) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(result.store_path)
    try:
        return db.execute("SELECT id, name, phone, email FROM leads").fetchall()
    finally:
        db.close()


def visitor_connections(result: DemoResult) -> list[SimSession]:
    """Simulator sessions a visitor talked on (a parked standby connection only got session.update)."""
    return [s for s in result.sim.sessions if any(e["type"] == "response.create" for e in s.received)]


def test_every_shipped_scenario_has_expectations() -> None:
    names = scenario_names()
    for name in ("happy_path", "interrupt", "consent_retry", "walk_away", "network_down", "budget_spent",
                 "withdraw_consent"):
        assert name in names
        assert load_scenario(name).expect, name


async def test_interrupt_truncates_the_reply_to_what_was_heard(tmp_path: Path) -> None:
    r = await demo("interrupt", tmp_path)
    (sim,) = visitor_connections(r)
    (trunc,) = [e for e in sim.received if e["type"] == "conversation.item.truncate"]
    had, kept = sim.truncated[trunc["item_id"]]
    # The barge-in came 2 s into a 12 s answer: the visitor heard only its start.
    assert kept == trunc["audio_end_ms"] < had
    assert 1500 < kept < 8000
    assert leads(r) == []
    assert r.rig.rec.ended == [cv.EndReason.BUTTON]
    assert P.VISITOR_SPEAKING in r.rig.lights.shown
    # The answer to the interruption was heard in full, after it.
    scenario = load_scenario("interrupt")
    assert r.rig.rec.lines[-1] == ("assistant", scenario.turns[1].reply.say)  # type: ignore[union-attr]


async def test_consent_refused_once_then_given_saves_exactly_one_lead(tmp_path: Path) -> None:
    r = await demo("consent_retry", tmp_path)
    saves = [t for t in r.rig.rec.tools if t[0] == "saveLead"]
    assert len(saves) == 1
    # The only saveLead came after the visitor's yes, never after the refusal.
    visitor_lines = [text for role, text in r.rig.rec.lines if role == "visitor"]
    assert visitor_lines[-1] == "Yes, I agree."
    assert json.loads(saves[0][1])["leadDraft"]["consentGiven"] is True
    rows = leads(r)
    assert [row[1:] for row in rows] == [("Jane Doe", "+14155550132", "jane.doe@example.com")]
    db = sqlite3.connect(r.store_path)
    (words,) = db.execute("SELECT visitor_words FROM consent").fetchone()
    db.close()
    assert "Yes, I agree." in words
    assert r.rig.rec.ended == [cv.EndReason.BUTTON]


async def test_a_visitor_who_says_stop_has_the_consent_withdrawn(tmp_path: Path) -> None:
    r = await demo("withdraw_consent", tmp_path)
    db = sqlite3.connect(r.store_path)
    try:
        status, words = db.execute("SELECT status, revoked_words FROM consent").fetchone()
        kinds = [k for (k,) in db.execute("SELECT kind FROM outbox ORDER BY id")]
        name = db.execute("SELECT name FROM leads").fetchone()[0]
    finally:
        db.close()
    assert status == "revoked" and "stop contacting me" in words
    assert kinds == ["consent_revocation"]  # "delete my details": the unsent lead is never uploaded
    assert name is None


async def test_walk_away_checks_in_then_ends_with_a_goodbye(tmp_path: Path) -> None:
    r = await demo("walk_away", tmp_path)
    scenario = load_scenario("walk_away")
    said = [text for role, text in r.rig.rec.lines if role == "assistant"]
    assert said[-2:] == [scenario.idle.say, scenario.goodbye.say]
    assert r.rig.rec.ended == [cv.EndReason.IDLE]
    assert r.rig.lights.shown[-1] is P.IDLE
    (sim,) = visitor_connections(r)
    # The check-in was the server's own (idle_timeout_ms), the goodbye the kiosk's request.
    creates = [e for e in sim.received if e["type"] == "response.create"]
    assert len(creates) == 2  # greeting and goodbye
    td = sim.session["audio"]["input"]["turn_detection"]
    assert td["idle_timeout_ms"] == 10000
    assert leads(r) == []


async def test_network_down_plays_the_offline_message_and_recovers(tmp_path: Path) -> None:
    r = await demo("network_down", tmp_path)
    rig = r.rig
    assert rig.offline_audio is not None and rig.offline_audio in rig.speaker.audio
    shown = rig.lights.shown
    assert P.OFFLINE in shown
    # Offline, then back to idle by itself, then the next press got a session.
    after = shown[shown.index(P.OFFLINE) + 1 :]
    assert after[0] is P.IDLE and P.LISTENING in after
    assert rig.rec.ended == [cv.EndReason.OFFLINE, cv.EndReason.BUTTON]
    assert rig.sim.auth_headers  # the kiosk did try the (refusing) service
    assert len(visitor_connections(r)) == 1
    assert leads(r) == []


async def test_budget_spent_refuses_with_the_unavailable_message(tmp_path: Path) -> None:
    r = await demo("budget_spent", tmp_path)
    rig = r.rig
    assert rig.unavailable_audio is not None and rig.unavailable_audio in rig.speaker.audio
    assert rig.offline_audio is not None and rig.offline_audio not in rig.speaker.audio
    assert P.UNAVAILABLE in rig.lights.shown
    assert P.CONNECTING not in rig.lights.shown
    assert rig.kiosk.visits_started == 0
    assert rig.rec.ended == []
    # No Realtime session was used by a visitor: at most the parked standby, configured only.
    assert visitor_connections(r) == []
    for s in rig.sim.sessions:
        assert [e["type"] for e in s.received] == ["session.update"]
    assert leads(r) == []


async def test_a_visitor_after_a_finished_one_shares_no_conversation_item(tmp_path: Path) -> None:
    scenario = load_scenario("happy_path")
    rig = Rig(scenario, tmp_path, speed=SPEED, config=CHECKOUT_CONFIG)
    async with rig.running():
        standby = rig.kiosk.standby
        assert standby is not None
        # Visitor 1: greeting, two turns (one with a tool call), then a press to finish.
        await rig.press(until=GREETED)
        await rig.assistant_turn()
        for turn in scenario.turns[:2]:
            await rig.pause(turn.pause_ms)
            await rig.say(read_wav(turn.visitor_audio))  # type: ignore[arg-type]
            await rig.assistant_turn()
        await rig.press(until={cv.State.IDLE})
        first_lines = list(rig.rec.lines)
        # The next connection is opened and configured in the background before visitor 2 comes.
        async with asyncio.timeout(15):
            await standby.ready_event.wait()
        opened_before_press = standby.opened
        connections_before_press = len(rig.sim.sessions)
        await rig.press(until=GREETED)
        await rig.assistant_turn()
        await rig.pause(400)
        await rig.say(read_wav(scenario.turns[0].visitor_audio))  # type: ignore[arg-type]
        await rig.assistant_turn()
        await rig.press(until={cv.State.IDLE})
    assert rig.rec.ended == [cv.EndReason.BUTTON, cv.EndReason.BUTTON]
    talked = [s for s in rig.sim.sessions if any(e["type"] == "response.create" for e in s.received)]
    assert len(talked) == 2
    v1, v2 = talked
    assert v1 is not v2 and v1.ws is not v2.ws
    # Visitor 2 took the warm standby: no connection was opened at their press.
    assert opened_before_press == connections_before_press == 2
    assert rig.sim.sessions[1] is v2
    assert len(rig.kiosk.first_audio_ms) == 2
    assert [e["type"] for e in v2.received].count("session.update") == 1
    # Nothing of visitor 1 reached visitor 2's connection: no item, call id or transcript.
    v1_items = set(v1.items)
    v1_calls = {str(i["call_id"]) for i in v1.items.values() if "call_id" in i}
    assert v1_items and v1_calls  # visitor 1 had a conversation, including a tool call
    v1_texts = {text for _, text in first_lines}
    assert ("visitor", scenario.turns[1].visitor) in first_lines
    received_by_v2 = json.dumps(v2.received)
    leaked = [x for x in v1_items | v1_calls | v1_texts if x in received_by_v2]
    assert leaked == []
    assert not [e for e in v2.received if e["type"] == "conversation.item.create"]


def test_demo_cli_runs_a_named_scenario_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(CHECKOUT_CONFIG), "demo", "--scenario",
                        "budget_spent", "--speed", "10", "--workdir", str(tmp_path), "--json"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["ok"] is True
    bad = subprocess.run([sys.executable, "-m", "kiosk", "demo", "--scenario", "no_such_visitor"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert "walk_away" in bad.stderr  # the known scenarios are listed


def test_a_scenario_with_a_misspelt_expectation_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"name": "typo", "expect": {"lead_saved": True, "end_reasn": "idle"}}))
    with pytest.raises(ValueError, match="end_reasn"):
        load_scenario(path)


async def test_expectations_that_do_not_hold_fail_the_demo(tmp_path: Path) -> None:
    # The budget scenario, but expecting a lead and a greeting: the runner must say no.
    data = json.loads(load_scenario_path("budget_spent").read_text())
    data["expect"] |= {"lead_saved": True, "greeted": True}
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(data))
    result = await run_demo(str(path), tmp_path / "run", speed=SPEED, out=io.StringIO(), config=CHECKOUT_CONFIG)
    assert not result.ok
    failed = [name for name, ok in result.checks if not ok]
    assert any("lead saved" in f for f in failed) and any("greeted" in f for f in failed)


def load_scenario_path(name: str) -> Traversable:
    from kiosk.sim.scenario import SCENARIOS

    return SCENARIOS / f"{name}.json"


def test_instructions_render_every_placeholder_and_stay_short() -> None:
    settings = checkout_settings({"branch": {
        "lender_name": "Acme Capital LLC", "nmls_id": "123456", "branch_name": "Harbor booth",
        "booking_url": "https://acme.example/book", "callback_phone": "+15555550199"}})
    text = load_instructions(settings)
    assert "{" not in text and "}" not in text
    for value in ("Acme Capital LLC", "123456", "Harbor booth", "https://acme.example/book"):
        assert value in text
    assert len(text.split()) < 500
    for tool in ("analyzeDeal", "searchKnowledgeBase", "saveLead", "scoreLead", "scheduleCall", "perplexitySearch"):
        assert tool in text
    # The script the assistant speaks is the disclosure stored as consent evidence, word for word.
    assert disclosure_text(settings.branch) in text
    assert "still there" in text.lower()
