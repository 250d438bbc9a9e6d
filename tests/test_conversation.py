"""The kiosk state machine, table-driven: (state, input) -> (state, commands)."""

from __future__ import annotations

import pytest

from kiosk import conversation as cv
from kiosk.conversation import State as S

T = cv.Timing(connect_timeout_s=10, max_visit_s=600, goodbye_s=8, offline_hold_s=30)


def machine_in(state: S, now: float = 0.0) -> cv.Conversation:
    """A machine driven into ``state`` by real inputs (no poking at internals)."""
    m = cv.Conversation(T)
    m.handle(cv.Tick(), now)
    paths: dict[S, list[cv.Input]] = {
        S.IDLE: [],
        S.CONNECTING: [cv.ButtonPressed()],
        S.LISTENING: [cv.ButtonPressed(), cv.SessionReady()],
        S.VISITOR_SPEAKING: [cv.ButtonPressed(), cv.SessionReady(), cv.VisitorSpeech(True)],
        S.ASSISTANT_SPEAKING: [cv.ButtonPressed(), cv.SessionReady(), cv.AssistantAudio(True)],
        S.OFFLINE: [cv.ButtonPressed(), cv.ConnectFailed("down")],
        S.ERROR: [cv.Fatal("bad key")],
    }
    for inp in paths[state]:
        m.handle(inp, now)
    assert m.state is state
    return m


def kinds(commands: list[cv.Command]) -> list[type]:
    return [type(c) for c in commands if not isinstance(c, cv.Lights)]


TABLE = [
    # state, input, new state, commands (lights excluded)
    (S.IDLE, cv.ButtonPressed(), S.CONNECTING, [cv.Connect]),
    (S.IDLE, cv.ButtonHeld(), S.IDLE, []),
    (S.IDLE, cv.VisitorSpeech(True), S.IDLE, []),
    (S.CONNECTING, cv.SessionReady(), S.LISTENING, [cv.Greet]),
    (S.CONNECTING, cv.ConnectFailed("refused"), S.OFFLINE,
     [cv.StopPlayback, cv.Hangup, cv.Wipe, cv.PlayOfflineMessage]),
    (S.CONNECTING, cv.ConnectFailed("bad key", fatal=True), S.ERROR, [cv.StopPlayback, cv.Hangup, cv.Wipe]),
    (S.CONNECTING, cv.ButtonPressed(), S.IDLE, [cv.StopPlayback, cv.Hangup, cv.Wipe]),
    (S.LISTENING, cv.VisitorSpeech(True), S.VISITOR_SPEAKING, []),
    (S.VISITOR_SPEAKING, cv.VisitorSpeech(False), S.LISTENING, []),
    (S.LISTENING, cv.AssistantAudio(True), S.ASSISTANT_SPEAKING, []),
    (S.ASSISTANT_SPEAKING, cv.AssistantAudio(False), S.LISTENING, []),
    (S.ASSISTANT_SPEAKING, cv.VisitorSpeech(True), S.VISITOR_SPEAKING, []),
    (S.LISTENING, cv.ButtonPressed(), S.IDLE, [cv.StopPlayback, cv.Hangup, cv.Wipe]),
    (S.ASSISTANT_SPEAKING, cv.ButtonHeld(), S.IDLE, [cv.StopPlayback, cv.Hangup, cv.Wipe]),
    (S.LISTENING, cv.ConnectionLost("drop"), S.CONNECTING, [cv.StopPlayback]),
    (S.LISTENING, cv.ReconnectFailed("gone"), S.OFFLINE,
     [cv.StopPlayback, cv.Hangup, cv.Wipe, cv.PlayOfflineMessage]),
    (S.LISTENING, cv.Fatal("quota"), S.ERROR, [cv.StopPlayback, cv.Hangup, cv.Wipe]),
    (S.LISTENING, cv.Shutdown(), S.IDLE, [cv.StopPlayback, cv.Hangup, cv.Wipe]),
    (S.OFFLINE, cv.ButtonPressed(), S.CONNECTING, [cv.Connect]),
    (S.OFFLINE, cv.NetworkRestored(), S.IDLE, []),
    (S.ERROR, cv.ButtonPressed(), S.ERROR, [cv.PlayOfflineMessage, cv.Refused]),
]


@pytest.mark.parametrize(("state", "inp", "new", "commands"), TABLE,
                         ids=[f"{s.value}+{type(i).__name__}" for s, i, _, _ in TABLE])
def test_transition(state: S, inp: cv.Input, new: S, commands: list[type]) -> None:
    m = machine_in(state)
    out = m.handle(inp, 1.0)
    assert m.state is new
    assert kinds(out) == commands


def test_lights_follow_state_and_change_only_when_needed() -> None:
    m = cv.Conversation(T)
    assert m.handle(cv.Tick(), 0) == [cv.Lights(cv.Pattern.IDLE)]
    assert m.handle(cv.Tick(), 1) == []
    assert cv.Lights(cv.Pattern.CONNECTING) in m.handle(cv.ButtonPressed(), 2)
    assert cv.Lights(cv.Pattern.LISTENING) in m.handle(cv.SessionReady(), 3)
    assert m.handle(cv.LocalVoice(True), 4) == [cv.Lights(cv.Pattern.VISITOR_SPEAKING)]
    assert m.handle(cv.LocalVoice(False), 5) == [cv.Lights(cv.Pattern.LISTENING)]
    assert cv.Lights(cv.Pattern.ASSISTANT_SPEAKING) in m.handle(cv.AssistantAudio(True), 6)


def test_local_voice_is_ignored_when_idle() -> None:
    m = machine_in(S.IDLE)
    assert m.handle(cv.LocalVoice(True), 1) == []
    assert m.pattern() is cv.Pattern.IDLE


def test_connect_timeout_goes_offline_and_plays_the_message() -> None:
    m = machine_in(S.CONNECTING, now=100)
    assert m.next_deadline == 110
    assert m.handle(cv.Tick(), 109.9) == []
    visit = m.visit_id
    out = m.handle(cv.Tick(), 110)
    assert m.state is S.OFFLINE and not m.visit_id
    assert cv.PlayOfflineMessage(visit) in out
    hang = next(c for c in out if isinstance(c, cv.Hangup))
    assert hang.reason is cv.EndReason.CONNECT_TIMEOUT
    # Offline clears by itself after the hold time.
    m.handle(cv.Tick(), 140)
    assert m.state is S.IDLE


def test_session_length_limit_says_goodbye_then_ends() -> None:
    m = machine_in(S.LISTENING, now=0)
    out = m.handle(cv.Tick(), 600)
    assert m.state is S.ENDING
    assert kinds(out) == [cv.SayGoodbye]
    m.handle(cv.AssistantAudio(True), 601)
    assert m.state is S.ENDING  # still saying goodbye
    out = m.handle(cv.AssistantAudio(False), 603)
    assert m.state is S.IDLE
    hang = next(c for c in out if isinstance(c, cv.Hangup))
    assert hang.reason is cv.EndReason.MAX_LENGTH
    assert hang.duration_s == 603
    assert cv.Wipe() in out


def test_goodbye_is_cut_when_it_takes_too_long() -> None:
    m = machine_in(S.LISTENING, now=0)
    m.handle(cv.Tick(), 600)
    out = m.handle(cv.Tick(), 608)
    assert m.state is S.IDLE
    assert cv.Wipe() in out


def test_reconnect_resumes_without_greeting_again() -> None:
    m = machine_in(S.LISTENING)
    m.handle(cv.ConnectionLost("drop"), 5)
    assert m.state is S.CONNECTING
    out = m.handle(cv.SessionReady(), 6)
    assert m.state is S.LISTENING
    assert kinds(out) == []


def test_reconnect_that_never_comes_ends_offline() -> None:
    m = machine_in(S.LISTENING)
    m.handle(cv.ConnectionLost("drop"), 5)
    out = m.handle(cv.Tick(), 15)
    assert m.state is S.OFFLINE
    hang = next(c for c in out if isinstance(c, cv.Hangup))
    assert hang.reason is cv.EndReason.CONNECTION_LOST


def test_session_numbers_increase() -> None:
    m = cv.Conversation(T)
    out1 = m.handle(cv.ButtonPressed(), 0)
    m.handle(cv.ButtonPressed(), 1)
    out2 = m.handle(cv.ButtonPressed(), 2)
    first = next(c for c in out1 if isinstance(c, cv.Connect))
    second = next(c for c in out2 if isinstance(c, cv.Connect))
    assert (first.visit_no, second.visit_no) == (1, 2)
    assert first.visit_id and second.visit_id and first.visit_id != second.visit_id


def test_every_state_change_of_a_visit_names_it_and_nothing_else_does(caplog: pytest.LogCaptureFixture) -> None:
    ids = iter(["v1", "r1"])
    m = cv.Conversation(T, new_id=lambda: next(ids))
    caplog.set_level("INFO", logger="kiosk.conversation.machine")
    out = m.handle(cv.ButtonPressed(), 0)
    assert cv.Connect(1, "v1") in out
    m.handle(cv.SessionReady(), 1)
    m.handle(cv.ConnectionLost("drop"), 2)
    out = m.handle(cv.ReconnectFailed("gone"), 3)  # ends the visit: offline, with the visit's id
    assert cv.PlayOfflineMessage("v1") in out
    m.handle(cv.BudgetSpent(daily=True), 4)
    m.handle(cv.NetworkRestored(), 5)  # not a visit's change: offline -> unavailable
    states = [(r.kiosk["state"], r.kiosk.get("session")) for r in caplog.records]  # type: ignore[attr-defined]
    assert states == [("connecting", "v1"), ("listening", "v1"), ("connecting", "v1"), ("offline", "v1"),
                      ("idle", None)]
    out = m.handle(cv.ButtonPressed(), 6)  # refused: a visit of its own, ended at once
    assert out == [cv.PlayUnavailableMessage("r1"), cv.Refused("r1", cv.EndReason.UNAVAILABLE)]


def test_a_visitor_who_walks_away_is_asked_once_then_said_goodbye_to() -> None:
    m = machine_in(S.LISTENING, now=0)
    assert m.handle(cv.VisitorIdle(), 20) == []  # the model asks "are you still there?" by itself
    m.handle(cv.AssistantAudio(True), 20.5)
    m.handle(cv.AssistantAudio(False), 22)  # check-in said: the idle timer starts
    assert m.next_deadline == 22 + T.idle_end_s
    out = m.handle(cv.Tick(), 22 + T.idle_end_s)
    assert m.state is S.ENDING and out[0] == cv.SayGoodbye(cv.EndReason.IDLE)
    m.handle(cv.AssistantAudio(True), 31)
    out = m.handle(cv.AssistantAudio(False), 33)
    assert m.state is S.IDLE
    assert next(c for c in out if isinstance(c, cv.Hangup)).reason is cv.EndReason.IDLE
    assert cv.Wipe() in out


def test_speech_after_the_check_in_keeps_the_session() -> None:
    m = machine_in(S.LISTENING, now=0)
    m.handle(cv.VisitorIdle(), 20)
    m.handle(cv.AssistantAudio(True), 20.5)
    m.handle(cv.AssistantAudio(False), 22)
    m.handle(cv.VisitorSpeech(True), 25)  # "yes, still here"
    assert m.next_deadline == 600  # only the session limit is left
    m.handle(cv.VisitorSpeech(False), 26)
    m.handle(cv.VisitorIdle(), 60)  # a new silence starts the count again: asked, not ended
    assert m.state is S.LISTENING


def test_a_second_server_idle_timeout_ends_the_session_at_once() -> None:
    m = machine_in(S.LISTENING, now=0)
    m.handle(cv.VisitorIdle(), 20)
    out = m.handle(cv.VisitorIdle(), 40)
    assert m.state is S.ENDING and out[0] == cv.SayGoodbye(cv.EndReason.IDLE)


def test_a_goodbye_waits_for_its_own_audio_not_the_end_of_the_reply_it_cut() -> None:
    m = machine_in(S.ASSISTANT_SPEAKING, now=0)
    m.handle(cv.Tick(), 600)  # the limit strikes mid-sentence
    assert m.state is S.ENDING
    assert kinds(m.handle(cv.AssistantAudio(False), 601)) == []  # the old reply ends: not the goodbye
    m.handle(cv.AssistantAudio(True), 602)
    out = m.handle(cv.AssistantAudio(False), 604)
    assert m.state is S.IDLE and next(c for c in out if isinstance(c, cv.Hangup)).reason is cv.EndReason.MAX_LENGTH


def test_the_session_budget_ends_the_session_with_a_goodbye() -> None:
    m = machine_in(S.LISTENING, now=0)
    out = m.handle(cv.BudgetSpent(daily=False), 100)
    assert m.state is S.ENDING and out[0] == cv.SayGoodbye(cv.EndReason.BUDGET)


def test_the_daily_budget_refuses_new_sessions_until_restored() -> None:
    m = machine_in(S.LISTENING, now=0)
    m.handle(cv.BudgetSpent(daily=True), 100)
    assert m.state is S.LISTENING  # the visitor in front of the kiosk finishes
    out = m.handle(cv.ButtonPressed(), 110)
    assert m.state is S.UNAVAILABLE and cv.Lights(cv.Pattern.UNAVAILABLE) in out
    assert kinds(m.handle(cv.ButtonPressed(), 120)) == [cv.PlayUnavailableMessage, cv.Refused]
    assert m.state is S.UNAVAILABLE
    out = m.handle(cv.BudgetRestored(), 86_400)
    assert m.state is S.IDLE and cv.Lights(cv.Pattern.IDLE) in out
    assert kinds(m.handle(cv.ButtonPressed(), 86_401)) == [cv.Connect]
