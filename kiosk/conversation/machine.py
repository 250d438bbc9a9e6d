"""The kiosk state machine itself: ``Conversation.handle(input, now) -> commands``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from kiosk.conversation.vocabulary import (
    ACTIVE,
    AssistantAudio,
    BudgetRestored,
    BudgetSpent,
    ButtonHeld,
    ButtonPressed,
    Command,
    Connect,
    ConnectFailed,
    ConnectionLost,
    EndReason,
    Fatal,
    Greet,
    Hangup,
    Input,
    Lights,
    LocalVoice,
    NetworkRestored,
    Pattern,
    PlayOfflineMessage,
    PlayUnavailableMessage,
    ReconnectFailed,
    Refused,
    SayGoodbye,
    SessionReady,
    Shutdown,
    State,
    StopPlayback,
    Tick,
    VisitorIdle,
    VisitorSpeech,
    Wipe,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """Timer lengths, in seconds (from settings)."""

    connect_timeout_s: float = 10.0
    max_visit_s: float = 600.0
    goodbye_s: float = 8.0
    offline_hold_s: float = 30.0
    idle_end_s: float = 8.0  # silence after the 'are you still there?' that ends the visit


def new_visit_id() -> str:
    """A fresh visit id (random: nothing to guess from it)."""
    return uuid.uuid4().hex


@dataclass
class Conversation:
    """The state machine. Feed it inputs with ``handle``; it returns commands."""

    timing: Timing = field(default_factory=Timing)
    state: State = State.IDLE
    visit_no: int = 0
    visit_id: str = ""  # the current visit's id ('' between visits)
    new_id: Callable[[], str] = new_visit_id  # injected by tests that want known ids
    _ended_id: str = ""  # the visit ended by this input: its closing state change carries its id
    _visit_started: float | None = None
    _deadline: float | None = None
    _reconnecting: bool = False
    _voice: bool = False
    _pattern: Pattern | None = None
    _idle_checked: bool = False  # the model has asked 'are you still there?'
    _idle_deadline: float | None = None
    _ending_reason: EndReason = EndReason.MAX_LENGTH
    _goodbye_playing: bool = False
    _unavailable: bool = False

    def handle(self, inp: Input, now: float) -> list[Command]:
        """Apply one input at monotonic time ``now``; return the commands to carry out."""
        out: list[Command] = []
        self._ended_id = ""
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            out += self._on_deadline(now)
        if self._idle_deadline is not None and now >= self._idle_deadline:
            self._idle_deadline = None
            if self.state in ACTIVE:
                out += self._say_goodbye(EndReason.IDLE, now, "visitor walked away")
        if not isinstance(inp, Tick):
            out += self._on_input(inp, now)
        pattern = self.pattern()
        if pattern != self._pattern:
            self._pattern = pattern
            out.append(Lights(pattern))
        return out

    def pattern(self) -> Pattern:
        """The light pattern for the current state."""
        if self.state is State.LISTENING and self._voice:
            return Pattern.VISITOR_SPEAKING
        return _PATTERNS[self.state]

    @property
    def next_deadline(self) -> float | None:
        """When the next timer fires (for the adapter's tick scheduling)."""
        timers = [t for t in (self._deadline, self._idle_deadline) if t is not None]
        return min(timers) if timers else None

    # -- internals -------------------------------------------------------------------

    def _go(self, new: State, why: str) -> None:
        if new is not self.state:
            fields: dict[str, object] = {"event": "state", "state": new.value}
            visit = self.visit_id or self._ended_id
            if visit:  # a change within a visit (or the one ending it) names the visit
                fields |= {"session": visit, "session_no": self.visit_no}
            log.info("state %s -> %s (%s)", self.state.value, new.value, why, extra={"kiosk": fields})
            self.state = new
        if new not in ACTIVE:
            self._voice = False
        if new is State.IDLE and self._unavailable:
            self.state = State.UNAVAILABLE  # visits stay refused until the budget is back

    def _duration(self, now: float) -> float | None:
        return None if self._visit_started is None else now - self._visit_started

    def _end(self, reason: EndReason, now: float, *, stop: bool = True) -> list[Command]:
        out: list[Command] = [StopPlayback()] if stop else []
        out += [Hangup(reason, self._duration(now)), Wipe()]
        self._ended_id, self.visit_id = self.visit_id, ""
        self._visit_started = None
        self._deadline = None
        self._idle_deadline = None
        self._idle_checked = False
        self._goodbye_playing = False
        self._reconnecting = False
        return out

    def _say_goodbye(self, reason: EndReason, now: float, why: str) -> list[Command]:
        """End politely: the assistant says goodbye, then the visit ends (or at the deadline)."""
        self._ending_reason = reason
        self._idle_deadline = None
        self._goodbye_playing = False
        self._go(State.ENDING, why)
        self._deadline = now + self.timing.goodbye_s
        return [SayGoodbye(reason)]

    def _on_deadline(self, now: float) -> list[Command]:
        if self.state is State.CONNECTING:
            reason = EndReason.CONNECTION_LOST if self._reconnecting else EndReason.CONNECT_TIMEOUT
            out = self._end(reason, now)
            self._go(State.OFFLINE, "connect timed out")
            self._deadline = now + self.timing.offline_hold_s
            return [*out, PlayOfflineMessage(self._ended_id)]
        if self.state in ACTIVE:
            return self._say_goodbye(EndReason.MAX_LENGTH, now, "visit length limit")
        if self.state is State.ENDING:
            out = self._end(self._ending_reason, now)
            self._go(State.IDLE, "goodbye time over")
            return out
        if self.state is State.OFFLINE:
            self._go(State.IDLE, "offline hold over")
        return []

    def _on_input(self, inp: Input, now: float) -> list[Command]:  # noqa: PLR0915 - one table
        s = self.state
        match inp:
            case Shutdown():
                out = self._end(EndReason.SHUTDOWN, now) if s in ACTIVE or s in (State.CONNECTING, State.ENDING) else []
                self._go(State.IDLE, "shutdown")
                return out
            case Fatal(reason=reason):
                out = self._end(EndReason.FATAL, now) if s is not State.IDLE else []
                self._go(State.ERROR, reason)
                return out
            case ButtonHeld() if s in ACTIVE or s in (State.CONNECTING, State.ENDING):
                out = self._end(EndReason.LONG_PRESS, now)
                self._go(State.IDLE, "long press")
                return out
            case ButtonPressed() if s is State.UNAVAILABLE:
                refused = self.new_id()
                return [PlayUnavailableMessage(refused), Refused(refused, EndReason.UNAVAILABLE)]
            case ButtonPressed() if s in (State.IDLE, State.OFFLINE):
                self.visit_no += 1
                self.visit_id = self.new_id()
                self._visit_started = now
                self._deadline = now + self.timing.connect_timeout_s
                self._go(State.CONNECTING, "button")
                return [Connect(self.visit_no, self.visit_id)]
            case ButtonPressed() if s is State.ERROR:
                refused = self.new_id()
                return [PlayOfflineMessage(refused), Refused(refused, EndReason.FATAL)]
            case ButtonPressed() if s in ACTIVE or s in (State.CONNECTING, State.ENDING):
                out = self._end(EndReason.BUTTON, now)
                self._go(State.IDLE, "button")
                return out
            case SessionReady() if s is State.CONNECTING:
                greet = not self._reconnecting
                self._reconnecting = False
                started = now if self._visit_started is None else self._visit_started
                self._deadline = started + self.timing.max_visit_s
                self._go(State.LISTENING, "session ready" if greet else "reconnected")
                return [Greet()] if greet else []
            case ConnectFailed(reason=reason, fatal=fatal) if s is State.CONNECTING:
                return self._offline_or_error(reason, fatal, EndReason.OFFLINE, now)
            case ConnectionLost(reason=reason) if s in ACTIVE:
                self._reconnecting = True
                self._deadline = now + self.timing.connect_timeout_s
                self._go(State.CONNECTING, f"connection lost: {reason}")
                return [StopPlayback()]
            case ConnectionLost() if s is State.ENDING:
                out = self._end(EndReason.CONNECTION_LOST, now)
                self._go(State.IDLE, "connection lost while ending")
                return out
            case ReconnectFailed(reason=reason, fatal=fatal) if s is State.CONNECTING or s in ACTIVE:
                return self._offline_or_error(reason, fatal, EndReason.CONNECTION_LOST, now)
            case VisitorSpeech(speaking=True) if s in ACTIVE:
                self._idle_checked = False
                self._idle_deadline = None
                self._go(State.VISITOR_SPEAKING, "speech started")
            case VisitorSpeech(speaking=False) if s is State.VISITOR_SPEAKING:
                self._go(State.LISTENING, "speech stopped")
            case AssistantAudio(playing=True) if s in ACTIVE:
                self._idle_deadline = None
                self._go(State.ASSISTANT_SPEAKING, "assistant audio")
            case AssistantAudio(playing=False) if s is State.ASSISTANT_SPEAKING:
                if self._idle_checked:
                    # The check-in was said; a further silence this long means they left.
                    self._idle_deadline = now + self.timing.idle_end_s
                self._go(State.LISTENING, "assistant done")
            case AssistantAudio(playing=True) if s is State.ENDING:
                self._goodbye_playing = True
            case AssistantAudio(playing=False) if s is State.ENDING and self._goodbye_playing:
                out = self._end(self._ending_reason, now, stop=False)
                self._go(State.IDLE, "goodbye spoken")
                return out
            case VisitorIdle() if s in ACTIVE:
                if self._idle_checked:
                    return self._say_goodbye(EndReason.IDLE, now, "visitor walked away")
                self._idle_checked = True
            case BudgetSpent(daily=False) if s in ACTIVE:
                return self._say_goodbye(EndReason.BUDGET, now, "visit budget spent")
            case BudgetSpent(daily=True):
                self._unavailable = True
                if s is State.IDLE:
                    self._go(State.UNAVAILABLE, "daily budget spent")
            case BudgetRestored():
                self._unavailable = False
                if s is State.UNAVAILABLE:
                    self._go(State.IDLE, "budget restored")
            case LocalVoice(active=active):
                self._voice = active and s in ACTIVE
            case NetworkRestored() if s is State.OFFLINE:
                self._deadline = None
                self._go(State.IDLE, "network restored")
            case _:
                pass
        return []

    def _offline_or_error(self, reason: str, fatal: bool, end: EndReason, now: float) -> list[Command]:
        out = self._end(EndReason.FATAL if fatal else end, now)
        if fatal:
            self._go(State.ERROR, reason)
            return out
        self._go(State.OFFLINE, reason)
        self._deadline = now + self.timing.offline_hold_s
        return [*out, PlayOfflineMessage(self._ended_id)]


_PATTERNS = {
    State.IDLE: Pattern.IDLE,
    State.CONNECTING: Pattern.CONNECTING,
    State.LISTENING: Pattern.LISTENING,
    State.VISITOR_SPEAKING: Pattern.VISITOR_SPEAKING,
    State.ASSISTANT_SPEAKING: Pattern.ASSISTANT_SPEAKING,
    State.ENDING: Pattern.ASSISTANT_SPEAKING,
    State.OFFLINE: Pattern.OFFLINE,
    State.UNAVAILABLE: Pattern.UNAVAILABLE,
    State.ERROR: Pattern.ERROR,
}
