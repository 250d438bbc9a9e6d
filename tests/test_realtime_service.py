"""The whole kiosk against the simulator's real-service habits (issue 14, part B): failed
responses, late or failed transcripts, refused configuration, audio in flight after a
barge-in, per-response instructions, refused requests, cut transcripts, the interrupting
goodbye, close reasons. Real WebSocket, real SQLite; audio from files."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
from pathlib import Path

import pytest

from kiosk import conversation as cv
from kiosk.audio.pcm import read_wav
from kiosk.config import load_settings
from kiosk.leads.store import Store
from kiosk.sim.demo import run_demo
from kiosk.sim.rig import Rig
from kiosk.sim.scenario import Reply, Scenario, Turn, load_scenario
from kiosk.sim.server import Faults, Habits
from tests.toolkit import CHECKOUT_CONFIG, LONG_GREETING, barge_rig

pytestmark = pytest.mark.timeout(90)
FAST = {"realtime": {"backoff_base_s": 0.05, "backoff_cap_s": 0.2}}
HAPPY = load_scenario("happy_path")
SPEECH = read_wav(HAPPY.turns[0].visitor_audio)  # type: ignore[arg-type]
SPEECH2 = read_wav(HAPPY.turns[1].visitor_audio)  # type: ignore[arg-type]
GREETED = {cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING}
MODEL = load_settings(CHECKOUT_CONFIG).settings.realtime.model
LONG_REPLY = Reply("We offer DSCR loans, hard money, fix and flip and portfolio loans. " * 3)


def kiosk_records(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("kiosk") and r.levelno >= level]


def sent(rig: Rig, etype: str, session: int = 0) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in rig.sim.sessions[session].received if e["type"] == etype]


# -- B1: failed responses classified by status_details.error.code ----------------------

async def test_no_quota_is_fatal_one_error_line_and_the_standby_stops(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, overrides=FAST,
              faults=Faults(response_failures=["insufficient_quota"]))
    async with rig.running():
        await rig.press(until={cv.State.ERROR}, limit_s=10)
        standby = rig.kiosk.standby
        assert standby is not None
        async with asyncio.timeout(5):
            await standby.stopped.wait()
        attempts = len(rig.sim.auth_headers)
        await rig.press()  # pressing again must not reconnect
        await rig.kiosk.wait_state({cv.State.ERROR}, limit_s=1)
        assert not standby.ready and len(rig.sim.auth_headers) == attempts
    errors = kiosk_records(caplog)
    assert len(errors) == 1 and "insufficient_quota" in errors[0].getMessage(), [r.getMessage() for r in errors]
    assert cv.Pattern.ERROR in rig.lights.shown


@pytest.mark.parametrize("code", ["inference_rate_limit_exceeded", "server_error"])
async def test_a_rate_limit_or_server_error_is_one_warning_line_then_an_apologising_retry(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, code: str) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, overrides=FAST, record=True,
              faults=Faults(response_failures=[code]))
    async with rig.running():
        await rig.press(until=GREETED)
        async with asyncio.timeout(15):
            await rig.assistant_turn()  # the retried greeting is heard
        await rig.press(until={cv.State.IDLE})
    creates = sent(rig, "response.create")
    assert len(creates) == 2
    assert "apologise" in creates[1]["response"]["instructions"]
    assert rig.rec.lines[0] == ("assistant", HAPPY.greeting.say)
    # Retried and served: one WARNING says what happened, and nothing at ERROR (an
    # operator's ERROR means the kiosk could not do its job).
    warnings = kiosk_records(caplog, logging.WARNING)
    assert len(warnings) == 1 and code in warnings[0].getMessage(), [r.getMessage() for r in warnings]
    assert warnings[0].levelno == logging.WARNING


async def test_a_response_that_fails_again_after_its_retry_ends_the_visit_offline(tmp_path: Path) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, overrides=FAST,
              faults=Faults(response_failures=["server_error", "server_error"]))
    async with rig.running():
        rig.expect_audio()
        await rig.press(until={cv.State.OFFLINE}, limit_s=15)
        await rig.hear_local_message(limit_s=15)
    assert rig.rec.ended == [cv.EndReason.CONNECTION_LOST]


async def test_an_incomplete_response_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, faults=Faults(response_failures=["content_filter"]))
    async with rig.running():
        await rig.press(until=GREETED)
        await rig.assistant_turn()
        await rig.press(until={cv.State.IDLE})
    (line,) = [r for r in kiosk_records(caplog, logging.INFO) if "incomplete" in r.getMessage()]
    assert "content_filter" in line.getMessage()


# -- B2: consent evidence is complete ------------------------------------------------------

def _evidence(result_store: Path, tools: list[tuple[str, str, str]]) -> str:
    (lead_id,) = [json.loads(out)["leadId"] for name, _, out in tools if name == "saveLead"]
    consent = Store(result_store).consent(lead_id)
    assert consent is not None
    return str(consent["visitor_words"])


async def test_the_yes_is_in_the_evidence_when_its_transcript_lands_after_the_response(tmp_path: Path) -> None:
    late = dataclasses.replace(HAPPY, service={"transcript_delay_ms": 1500, "transcript_deltas": True})
    result = await run_demo(late, tmp_path, speed=10, out=io.StringIO(), config=CHECKOUT_CONFIG)
    assert result.ok, result.checks
    words = _evidence(result.store_path, result.rig.rec.tools)
    assert words.splitlines()[-1] == HAPPY.turns[3].visitor  # "Yes, I agree."


async def test_a_failed_transcription_is_logged_and_marked_in_the_evidence(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    failing = dataclasses.replace(HAPPY, faults={"fail_transcription_turns": [3]})
    result = await run_demo(failing, tmp_path, speed=10, out=io.StringIO(), config=CHECKOUT_CONFIG)
    assert result.ok, result.checks
    words = _evidence(result.store_path, result.rig.rec.tools)
    assert words.splitlines()[-1] == "[inaudible: transcription failed]"
    assert any("transcription failed" in r.getMessage() for r in kiosk_records(caplog, logging.WARNING))


# -- B3: a refused configuration is fatal, with what was refused -------------------------

@pytest.mark.parametrize(("overrides", "habits", "expect"), [
    ({"realtime": {"voice": "robot"}}, Habits(),
     "configuration rejected by the service: session.audio.output.voice: Invalid value: 'robot'"),
    ({}, Habits(retired_models=[MODEL]), f"model_not_found: The model `{MODEL}` has been shut down"),
], ids=["voice", "retired-model"])
async def test_a_refused_configuration_is_fatal_at_once_without_a_retry_loop(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, overrides: dict, habits: Habits, expect: str) -> None:  # type: ignore[type-arg]
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, overrides={**FAST, **overrides}, habits=habits)
    async with rig.running():
        await rig.kiosk.wait_state({cv.State.ERROR}, limit_s=10)  # found by the standby, before any visitor
        await rig.press()
        await rig.kiosk.wait_state({cv.State.ERROR}, limit_s=1)
    assert len(rig.sim.auth_headers) == 1
    errors = kiosk_records(caplog)
    assert len(errors) == 1 and expect in errors[0].getMessage(), [r.getMessage() for r in errors]


# -- B4 and B8: interrupted audio is dropped; the kiosk's transcript is cut ------------------

async def test_audio_in_flight_after_a_barge_in_is_dropped_and_each_item_truncated_once(tmp_path: Path) -> None:
    rig = barge_rig(tmp_path, turns=(Turn(HAPPY.turns[0].visitor, reply=LONG_REPLY),
                                      Turn(HAPPY.turns[1].visitor, reply=Reply("Sure."))),
                    habits=Habits(cancel_tail_ms=400))  # fmt: skip
    async with rig.running():
        await rig.press()
        rig.expect_audio()
        await rig.talk_over(1500, SPEECH, limit_s=10)  # over the greeting
        rig.expect_audio()
        await rig.talk_over(1500, SPEECH2, limit_s=10)  # over the reply
        await rig.assistant_turn()
        sim = rig.sim.sessions[0]
        truncates = sent(rig, "conversation.item.truncate")
        played = {t["item_id"]: rig.speaker.played_ms(t["item_id"]) for t in truncates}
        await rig.press(until={cv.State.IDLE})
    assert len(truncates) == 2 and len({t["item_id"] for t in truncates}) == 2  # one per item, never again
    for t in truncates:
        # Nothing of the audio still in flight was played after the cut.
        assert abs(played[t["item_id"]] - t["audio_end_ms"]) <= 20, (played, truncates)
        assert sim.audio_ms[t["item_id"]] == t["audio_end_ms"]
    assert not [e for e in sim.sent if e["type"] == "error"]


async def test_a_replayed_conversation_holds_only_what_the_visitor_heard(tmp_path: Path) -> None:
    rig = barge_rig(tmp_path)
    async with rig.running():
        await rig.press()
        await rig.talk_over(1500, SPEECH, limit_s=10)
        await rig.assistant_turn()
        rig.sim.sessions[0].expire()
        second = await rig.sim.wait_for_session(2, limit_s=5)
        await second.configured.wait()
        await rig.press(until={cv.State.IDLE})
    (replay,) = [e for e in second.received if e["type"] == "conversation.item.create"]
    text = replay["item"]["content"][0]["text"]
    assert "Welcome!" in text and "…" in text
    assert LONG_GREETING.say.strip() not in text  # the unheard rest of the greeting was never said


# -- B6: per-response instructions keep the persona -----------------------------------------

@pytest.mark.parametrize("name", ["happy_path", "walk_away"])
async def test_greeting_and_goodbye_keep_the_session_instructions(tmp_path: Path, name: str) -> None:
    result = await run_demo(name, tmp_path, speed=10, out=io.StringIO(), config=CHECKOUT_CONFIG, record=True)
    assert result.ok, result.checks
    creates = [e for s in result.sim.sessions for e in s.received if e["type"] == "response.create"]
    assert any((e.get("response") or {}).get("instructions") for e in creates)
    assert [s.persona_lost for s in result.sim.sessions] == [[] for _ in result.sim.sessions]


# -- B7: a refused response.create is not pending forever --------------------------------------

async def test_a_refused_greeting_does_not_block_the_recycle(tmp_path: Path) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, record=True,
              overrides={"realtime": {"recycle_after_s": 0.5}}, faults=Faults(refuse_response_creates=1))
    async with rig.running():
        await rig.press(until=GREETED)
        visit = rig.kiosk.visit
        assert visit is not None
        async with asyncio.timeout(10):
            while visit.recycles < 1:  # noqa: ASYNC110 - a counter, no event to await
                await asyncio.sleep(0.05)
        await rig.press(until={cv.State.IDLE})


# -- B9: the interrupting goodbye flushes and truncates like a barge-in ---------------------------

async def test_the_interrupting_goodbye_cancels_flushes_and_truncates(tmp_path: Path) -> None:
    scenario = Scenario(name="leaving", greeting=LONG_GREETING)
    rig = Rig(scenario, tmp_path, config=CHECKOUT_CONFIG, speed=4, record=True)
    async with rig.running():
        rig.expect_audio()
        await rig.press()
        await rig.assistant_starts(limit_s=10)
        await rig.pause(1500)
        # The server's idle check-ins, twice: the visitor walked away; the goodbye cuts in.
        rig.kiosk.submit(cv.VisitorIdle())
        rig.kiosk.submit(cv.VisitorIdle())
        async with asyncio.timeout(5):
            while not (cut := sent(rig, "conversation.item.truncate") + sent(rig, "conversation.item.delete")):  # noqa: ASYNC110 - the simulator's record, no event to await
                await asyncio.sleep(0.02)
        played = rig.speaker.played_ms(cut[0]["item_id"])  # before the visit ends and the speaker forgets it
        await rig.kiosk.wait_state({cv.State.IDLE}, limit_s=15)
    cancel = sent(rig, "response.cancel")
    assert cancel and len(cut) == 1
    assert 1000 < played < 6000  # the speaker was flushed: far short of the ~13 s greeting
    assert cut[0]["type"] == "conversation.item.delete" or abs(cut[0]["audio_end_ms"] - played) <= 20
    assert rig.rec.ended == [cv.EndReason.IDLE]


# -- B10: close reasons are read, not every 3000 is a bad key ------------------------------------

async def test_a_close_3000_for_another_reason_is_retried_not_called_a_bad_key(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, overrides=FAST,
              faults=Faults(close_3000_reason="invalid_request_error.unexpected_condition"))
    async with rig.running():
        await rig.press(until=GREETED, limit_s=10)
        await rig.assistant_turn()
        await rig.press(until={cv.State.IDLE})
    assert cv.Pattern.ERROR not in rig.lights.shown
    assert not any("invalid API key" in r.getMessage() for r in caplog.records)
