"""The kiosk state machine: pure, time passed in.

``Conversation.handle(input, now)`` turns one input (button, session event, timer tick)
into a list of commands (connect, greet, hang up, wipe, set lights, ...). It never
touches a socket, a device or the clock, so every path is a table-driven test.

States::

    IDLE -> CONNECTING -> ACTIVE (LISTENING | VISITOR_SPEAKING | ASSISTANT_SPEAKING)
         -> ENDING -> IDLE            plus OFFLINE and ERROR

The lights are derived from the state (and the local VAD while listening); a ``Lights``
command is emitted only when the derived pattern changes.
"""

from __future__ import annotations

from kiosk.conversation.machine import Conversation, Timing
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

__all__ = [
    "ACTIVE",
    "AssistantAudio",
    "BudgetRestored",
    "BudgetSpent",
    "ButtonHeld",
    "ButtonPressed",
    "Command",
    "Connect",
    "ConnectFailed",
    "ConnectionLost",
    "Conversation",
    "EndReason",
    "Fatal",
    "Greet",
    "Hangup",
    "Input",
    "Lights",
    "LocalVoice",
    "NetworkRestored",
    "Pattern",
    "PlayOfflineMessage",
    "PlayUnavailableMessage",
    "ReconnectFailed",
    "Refused",
    "SayGoodbye",
    "SessionReady",
    "Shutdown",
    "State",
    "StopPlayback",
    "Tick",
    "Timing",
    "VisitorIdle",
    "VisitorSpeech",
    "Wipe",
]
