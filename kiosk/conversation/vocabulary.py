"""The state machine's vocabulary: states, light patterns, end reasons, inputs and commands."""


from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.Enum):
    """What the kiosk is doing, as ops and the lights see it."""

    IDLE = "idle"
    CONNECTING = "connecting"
    LISTENING = "listening"
    VISITOR_SPEAKING = "visitor_speaking"
    ASSISTANT_SPEAKING = "assistant_speaking"
    ENDING = "ending"
    OFFLINE = "offline"
    UNAVAILABLE = "unavailable"  # the daily budget is spent: no new visits today
    ERROR = "error"


ACTIVE = frozenset({State.LISTENING, State.VISITOR_SPEAKING, State.ASSISTANT_SPEAKING})


class Pattern(enum.Enum):
    """Light patterns; the panel maps each to concrete LED behaviour."""

    IDLE = "idle"  # slow breathe: press me
    CONNECTING = "connecting"  # fast blink
    LISTENING = "listening"  # solid
    VISITOR_SPEAKING = "visitor_speaking"
    ASSISTANT_SPEAKING = "assistant_speaking"  # pulse
    OFFLINE = "offline"
    UNAVAILABLE = "unavailable"
    ERROR = "error"  # fast blink


class EndReason(enum.Enum):
    """Why a visit ended (journald ``KIOSK_REASON``)."""

    BUTTON = "button"
    LONG_PRESS = "long_press"
    MAX_LENGTH = "max_length"
    IDLE = "idle"
    BUDGET = "budget"
    GOODBYE = "goodbye"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECTION_LOST = "connection_lost"
    OFFLINE = "offline"
    FATAL = "fatal"
    SHUTDOWN = "shutdown"
    UNAVAILABLE = "unavailable"  # refused at the press: the day's budget is spent


# ---- inputs -------------------------------------------------------------------------


@dataclass(frozen=True)
class ButtonPressed:
    """A short press of the big button."""


@dataclass(frozen=True)
class ButtonHeld:
    """A long press: end now and wipe (privacy)."""


@dataclass(frozen=True)
class SessionReady:
    """The Realtime session is configured (``session.updated``)."""


@dataclass(frozen=True)
class ConnectFailed:
    """Connecting failed; ``fatal`` for a bad key or no quota."""

    reason: str
    fatal: bool = False


@dataclass(frozen=True)
class ConnectionLost:
    """The connection dropped during a visit; the connection layer is reconnecting."""

    reason: str


@dataclass(frozen=True)
class ReconnectFailed:
    """The connection layer gave up reconnecting during a visit."""

    reason: str
    fatal: bool = False


@dataclass(frozen=True)
class VisitorSpeech:
    """Server VAD: the visitor started (True) or stopped (False) speaking."""

    speaking: bool


@dataclass(frozen=True)
class VisitorIdle:
    """The server's idle timer fired (``input_audio_buffer.timeout_triggered``): the model
    is asking whether the visitor is still there."""


@dataclass(frozen=True)
class BudgetSpent:
    """A cost budget is spent: ``daily`` refuses new sessions, else this session ends."""

    daily: bool


@dataclass(frozen=True)
class BudgetRestored:
    """A new day: the daily budget is available again."""


@dataclass(frozen=True)
class AssistantAudio:
    """The speaker started (True) or finished (False) playing the assistant."""

    playing: bool


@dataclass(frozen=True)
class LocalVoice:
    """The local webrtcvad heard voice (lights only, never turn-taking)."""

    active: bool


@dataclass(frozen=True)
class NetworkRestored:
    """A background connection attempt succeeded: the service is reachable again."""


@dataclass(frozen=True)
class Fatal:
    """Something the kiosk cannot recover from by itself (bad API key, ...)."""

    reason: str


@dataclass(frozen=True)
class Shutdown:
    """The daemon is stopping."""


@dataclass(frozen=True)
class Tick:
    """Timers are checked on every input; a tick is an input that carries only time."""


Input = (
    ButtonPressed
    | ButtonHeld
    | SessionReady
    | ConnectFailed
    | ConnectionLost
    | ReconnectFailed
    | VisitorSpeech
    | AssistantAudio
    | LocalVoice
    | VisitorIdle
    | BudgetSpent
    | BudgetRestored
    | NetworkRestored
    | Fatal
    | Shutdown
    | Tick
)

# ---- commands -----------------------------------------------------------------------


@dataclass(frozen=True)
class Connect:
    """Open (or take the warm) Realtime session for a new visitor."""

    visit_no: int
    visit_id: str = ""  # the visit's id: journald's KIOSK_SESSION on every line of the visit


@dataclass(frozen=True)
class Greet:
    """Ask the assistant to greet the visitor first."""


@dataclass(frozen=True)
class SayGoodbye:
    """Ask the assistant for a short spoken goodbye (a limit reached, or the visitor left)."""

    reason: EndReason = EndReason.MAX_LENGTH


@dataclass(frozen=True)
class StopPlayback:
    """Silence the speaker now and drop queued audio."""


@dataclass(frozen=True)
class Hangup:
    """Close the visitor's Realtime session."""

    reason: EndReason
    duration_s: float | None


@dataclass(frozen=True)
class Wipe:
    """Forget the visitor: conversation, the visit's tool scope (lead ids, analyses)."""


@dataclass(frozen=True)
class PlayOfflineMessage:
    """Play the local prerecorded 'we are offline' message."""

    visit_id: str = ""  # the visit it answers (for the log line)


@dataclass(frozen=True)
class PlayUnavailableMessage:
    """Play the local 'not available right now' message (daily budget spent)."""

    visit_id: str = ""


@dataclass(frozen=True)
class Refused:
    """A press started no visit (daily budget spent, or the kiosk is in ERROR): it is a
    visit all the same for the lender's numbers, ended at once for ``reason``."""

    visit_id: str
    reason: EndReason


@dataclass(frozen=True)
class Lights:
    """Show a light pattern."""

    pattern: Pattern


Command = (
    Connect
    | Greet
    | SayGoodbye
    | StopPlayback
    | Hangup
    | Wipe
    | PlayOfflineMessage
    | PlayUnavailableMessage
    | Refused
    | Lights
)
