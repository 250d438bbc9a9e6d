"""What the Realtime session core tells the rest of the kiosk: effects, and token usage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
    """The service refused us for good (bad key, no quota)."""

    code: str
    message: str


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
)


@dataclass(frozen=True)
class Usage:
    """Token usage of one response, or a sum of several."""

    input_tokens: int = 0
    output_tokens: int = 0
    input_audio_tokens: int = 0
    input_text_tokens: int = 0
    cached_tokens: int = 0
    output_audio_tokens: int = 0
    output_text_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        """Fields in declaration order."""
        return (
            self.input_tokens,
            self.output_tokens,
            self.input_audio_tokens,
            self.input_text_tokens,
            self.cached_tokens,
            self.output_audio_tokens,
            self.output_text_tokens,
        )

    @classmethod
    def from_response(cls, usage: Mapping[str, Any] | None) -> Usage:
        """Read ``response.done.response.usage`` (missing parts count as zero)."""
        if not usage:
            return cls()
        inp = usage.get("input_token_details") or {}
        out = usage.get("output_token_details") or {}

        def n(d: Mapping[str, Any], k: str) -> int:
            v = d.get(k)
            return v if isinstance(v, int) else 0

        return cls(
            n(usage, "input_tokens"),
            n(usage, "output_tokens"),
            n(inp, "audio_tokens"),
            n(inp, "text_tokens"),
            n(inp, "cached_tokens"),
            n(out, "audio_tokens"),
            n(out, "text_tokens"),
        )
