"""The pure rules under the Realtime core, on scripted frames and a manual clock: failures by
code, close reasons, the connection gate and recycle back-off, the transcript book, and
the core's handling of refused requests, late audio and interrupting goodbyes."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from kiosk.config import RealtimeSettings
from kiosk.realtime import failures as fl
from kiosk.realtime import session as rs
from kiosk.realtime.connection import AttemptGate, Reconnector
from kiosk.realtime.frames import LogLimiter
from kiosk.realtime.transcripts import FAILED_MARK, PENDING_MARK, TranscriptBook

CFG = rs.SessionConfig(RealtimeSettings(), instructions="You are the kiosk.")


def frame(**event: Any) -> str:
    return json.dumps(event)


def audio(item: str, ms: int, rid: str = "r1") -> str:
    return frame(type="response.output_audio.delta", response_id=rid, item_id=item, output_index=0,
                 content_index=0, delta=base64.b64encode(bytes(ms * 48)).decode())


def started() -> rs.RealtimeSession:
    s = rs.RealtimeSession(CFG)
    s.start()
    s.drain()
    s.receive(frame(type="session.updated", session={}), 0.0)
    return s


# -- classification ---------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "code", "want"), [
    ("completed", "", fl.Outcome.COMPLETED), ("cancelled", "", fl.Outcome.CANCELLED),
    ("incomplete", "", fl.Outcome.INCOMPLETE), ("failed", "insufficient_quota", fl.Outcome.FATAL),
    ("failed", "inference_rate_limit_exceeded", fl.Outcome.RETRY), ("failed", "server_error", fl.Outcome.RETRY),
    ("failed", "", fl.Outcome.RETRY), ("weird", "", fl.Outcome.INCOMPLETE)])
def test_responses_are_classified_by_status_and_error_code(status: str, code: str, want: fl.Outcome) -> None:
    assert fl.response_outcome(status, code) is want


@pytest.mark.parametrize(("code", "reason", "fatal"), [
    (3000, "invalid_request_error.invalid_api_key", True), (3000, "invalid_request_error.insufficient_quota", True),
    (3000, "invalid_request_error.unexpected_condition", False), (1001, "session expired", False),
    (1009, "", False), (None, "", False)])
def test_closes_are_classified_by_their_reason_text(code: int | None, reason: str, fatal: bool) -> None:
    assert fl.close_is_fatal(code, reason) is fatal
    assert ("invalid API key" in fl.describe_close(code, reason)) is ("invalid_api_key" in reason)


# -- connection policy ---------------------------------------------------------------------------

def test_the_gate_allows_20_attempts_in_any_minute() -> None:
    gate, now, starts = AttemptGate(20), 0.0, []
    for _ in range(60):  # a caller that tries again at once, always
        now += gate.wait_s(now)
        gate.attempt(now)
        starts.append(now)
    for i in range(len(starts) - 20):
        assert starts[i + 20] - starts[i] >= 60.0  # never 21 in a minute
    assert starts[19] == 0.0 and starts[20] == 60.0  # but no slower than that


def test_a_recycle_waits_only_after_a_short_lived_connection() -> None:
    recon = Reconnector(1.0, 60.0, stable_after=60.0, rng=_Fixed(0.5))
    recon.connected(0.0)
    assert recon.recycle_delay(3000.0) == 0.0  # the planned recycle after 50 minutes: invisible
    recon.connected(3000.0)
    assert recon.recycle_delay(3000.5) == 0.5  # expired at once: a back-off like a failure
    recon.connected(3001.0)
    assert recon.recycle_delay(3001.1) == 1.0  # ...growing


class _Fixed:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_the_log_limiter_says_how_much_it_held_back() -> None:
    quiet = LogLimiter(interval_s=10.0)
    assert quiet.allow("x", 0.0) == 0
    assert quiet.allow("x", 1.0) is None and quiet.allow("x", 2.0) is None
    assert quiet.allow("y", 2.0) == 0
    assert quiet.allow("x", 11.0) == 2


# -- the transcript book ------------------------------------------------------------------------------

def test_late_visitor_lines_take_their_place_and_cut_lines_are_marked() -> None:
    book = TranscriptBook()
    book.expect_visitor("u1")
    book.assistant_started("a1")
    book.assistant("a1", "one two three four five six seven eight", 800)
    book.expect_visitor("u2")
    assert book.pending_visitor() == ["u1", "u2"]
    book.visitor("u2", " yes I agree ")
    book.visitor_failed("u1")
    book.truncated("a1", 200, 800)  # a quarter of it was heard
    assert book.lines() == [("visitor", FAILED_MARK), ("assistant", "one two …"), ("visitor", "yes I agree")]
    book.expect_visitor("u3")
    assert book.lines()[-1] == ("visitor", PENDING_MARK) and "not transcribed" not in book.condensed()


# -- the core --------------------------------------------------------------------------------------------

def test_an_error_naming_our_response_create_clears_the_pending_request(caplog: pytest.LogCaptureFixture) -> None:
    s = started()
    assert s.request_response("Greet.")
    (create,) = s.drain()
    assert not s.quiet
    s.receive(frame(type="error", error={"type": "invalid_request_error", "code": "string_above_max_length",
                                         "message": "too long", "param": "response.instructions",
                                         "event_id": create["event_id"]}), 1.0)
    assert s.quiet and s.active_response is None
    assert s.request_response("Greet again.")  # the next request goes out at once


def test_a_refused_session_update_is_fatal_with_the_parameter() -> None:
    s = rs.RealtimeSession(CFG)
    s.start()
    (update,) = s.drain()
    effects = s.receive(frame(type="error", error={"type": "invalid_request_error", "code": "invalid_value",
                                                   "message": "Invalid value: 'robot'.",
                                                   "param": "session.audio.output.voice",
                                                   "event_id": update["event_id"]}), 0.0)
    (fatal,) = effects
    assert isinstance(fatal, rs.FatalError)
    assert fatal.describe() == ("configuration rejected by the service: session.audio.output.voice: "
                                "Invalid value: 'robot'.")


def test_late_audio_of_an_interrupted_item_is_not_played_and_its_line_is_cut() -> None:
    s = started()
    s.receive(frame(type="response.created", response={"id": "r1"}), 0.0)
    assert s.receive(audio("a1", 1000), 0.1) == [rs.PlayAudio("a1", bytes(48_000))]
    effects = s.receive(frame(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1"), 0.2)
    assert rs.FlushPlayback() in effects
    s.playback_flushed({"a1": 250.0})
    assert s.receive(audio("a1", 1000), 0.3) == []  # still in flight: dropped
    effects = s.receive(frame(type="response.output_audio_transcript.done", response_id="r1", item_id="a1",
                              output_index=0, content_index=0, transcript="w1 w2 w3 w4 w5 w6 w7 w8"), 0.4)
    # 250 ms heard of 2000 ms received in all: one word of eight.
    assert effects == [rs.Transcript("assistant", "w1 …", "a1")]
    (trunc,) = s.drain()
    assert trunc["audio_end_ms"] == 250
    s.playback_flushed({"a1": 900.0})  # a later flush reporting the item again: no second truncation
    assert s.drain() == []


def test_the_interrupting_goodbye_flushes_and_truncates_like_a_barge_in() -> None:
    s = started()
    s.receive(frame(type="response.created", response={"id": "r1"}), 0.0)
    s.receive(audio("a1", 1000), 0.1)
    assert s.interrupt() == [rs.FlushPlayback()]
    s.playback_flushed({"a1": 400.0})
    s.request_response("Say goodbye.")
    assert [e["type"] for e in s.drain()] == ["response.cancel", "conversation.item.truncate"]
    s.receive(frame(type="response.done", response={"id": "r1", "status": "cancelled"}), 0.5)
    (create,) = s.drain()
    assert create["response"]["instructions"] == "You are the kiosk.\n\nSay goodbye."


def test_odd_length_audio_keeps_whole_samples(caplog: pytest.LogCaptureFixture) -> None:
    s = started()
    odd = frame(type="response.output_audio.delta", response_id="r", item_id="a", output_index=0,
                content_index=0, delta=base64.b64encode(b"abc").decode())
    caplog.set_level(logging.WARNING)
    assert s.receive(odd, 0.0) == [rs.PlayAudio("a", b"ab")]
    assert s.receive(odd, 1.0) == [rs.PlayAudio("a", b"ab")]
    assert len([r for r in caplog.records if "odd-length" in r.getMessage()]) == 1  # rate-limited


def test_a_failed_response_asks_once_more_with_an_apology_then_gives_up() -> None:
    s = started()
    s.request_response("Greet.")
    (create,) = s.drain()
    failed = {"type": "failed", "error": {"type": "server_error", "code": "server_error", "message": "oops"}}
    s.receive(frame(type="response.created", response={"id": "r1", "metadata": {"client_event_id":
                                                                              create["event_id"]}}), 0.0)
    effects = s.receive(frame(type="response.done", response={"id": "r1", "status": "failed",
                                                              "status_details": failed}), 0.1)
    assert rs.ResponseFailed("server_error", "oops", retry=True) in effects
    assert not s.quiet  # a retry is due: no recycle now
    s.retry_response()
    (retry,) = s.drain()
    assert retry["response"]["instructions"].startswith("You are the kiosk.\n\nGreet.\n\n")
    assert "apologise" in retry["response"]["instructions"]
    s.receive(frame(type="response.created", response={"id": "r2", "metadata": {"client_event_id":
                                                                              retry["event_id"]}}), 1.0)
    effects = s.receive(frame(type="response.done", response={"id": "r2", "status": "failed",
                                                              "status_details": failed}), 1.1)
    assert rs.ResponseFailed("server_error", "oops", retry=False) in effects


# -- cancellation is never lost --------------------------------------------------------------------------

async def test_a_cancelled_connect_ends_cancelled_even_when_the_handshake_fails_at_that_moment() -> None:
    """A visit cancelled (hung up) while its reconnect fails must end: on Python 3.11 asyncio.wait_for
    swallows a cancellation that lands as the inner call fails, and the visit retried for ever."""
    import asyncio

    from pydantic import SecretStr

    from kiosk.errors import RealtimeError
    from kiosk.realtime.connection import RealtimeConnection
    from kiosk.sim.scenario import Scenario
    from kiosk.sim.server import Faults, SimOptions, SimServer

    lost = []
    async with SimServer(SimOptions(scenario=Scenario(name="x"), faults=Faults(http_status=503))) as sim:
        for steps in range(80):  # cancel after every possible number of event-loop steps
            task = asyncio.create_task(RealtimeConnection.open(
                sim.url, "gpt-realtime-2.1", SecretStr("k"), connect_timeout=5, ping_interval=20))
            for _ in range(steps):
                await asyncio.sleep(0)
            requested = task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                continue
            except RealtimeError:
                if requested:
                    lost.append(steps)
    assert lost == []
