"""What the Realtime session core tells the rest of the kiosk: its effects."""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.realtime.usage import Usage

CONFIG_REJECTED = "config_rejected"  # FatalError.code when the service refused our session.update


@dataclass(frozen=True)
class Ready:
    """The session is configured; the first ``session.updated`` arrived."""


@dataclass(frozen=True)
class PlayAudio:
    """Queue assistant audio (PCM16 24 kHz) for the speaker, tagged with its item id."""

    item_id: str
    pcm: bytes


@dataclass(frozen=True)
class FlushPlayback:
    """Stop the speaker now and drop queued audio; then call ``playback_flushed``."""


@dataclass(frozen=True)
class VisitorSpeaking:
    """Server VAD started (True) or stopped (False) hearing the visitor."""

    speaking: bool


@dataclass(frozen=True)
class Transcript:
    """A finished transcript line: ``role`` is ``assistant`` or ``visitor``."""

    role: str
    text: str
    item_id: str


@dataclass(frozen=True)
class ToolCall:
    """One function call from the model."""

    call_id: str
    name: str
    arguments: str
    response_id: str


@dataclass(frozen=True)
class RunTools:
    """Run these calls (from one completed response) and hand the outputs to ``tool_results``."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class ResponseFinished:
    """A response ended; ``status`` is completed | cancelled | failed | incomplete."""

    response_id: str
    status: str
    reason: str | None
    usage: Usage


@dataclass(frozen=True)
class IdleTimeout:
    """The server's idle timer fired; it is creating a check-in response by itself."""


@dataclass(frozen=True)
class Recycle:
    """The session must be replaced (expired); replay with :meth:`RealtimeSession.replay`."""

    reason: str


@dataclass(frozen=True)
class FatalError:
    """The service refused us for good (bad key, no quota, a refused configuration)."""

    code: str
    message: str

    def describe(self) -> str:
        """One line for the log and the status: what was refused, and why."""
        return self.message if self.code == CONFIG_REJECTED else f"{self.code}: {self.message}"


@dataclass(frozen=True)
class ResponseFailed:
    """A response failed for a reason worth a retry (rate limit, server error).

    With ``retry`` the adapter waits a back-off and calls ``retry_response``; without it
    the one retry was spent and the visit cannot go on.
    """

    code: str
    message: str
    retry: bool


@dataclass(frozen=True)
class UsageReported:
    """Usage billed outside a response (input transcription)."""

    usage: Usage


Effect = (
    Ready
    | PlayAudio
    | FlushPlayback
    | VisitorSpeaking
    | Transcript
    | RunTools
    | ResponseFinished
    | IdleTimeout
    | Recycle
    | FatalError
    | ResponseFailed
    | UsageReported
)
