"""What a session is configured with: the GA ``session.update`` object, and per-response instructions.

Response-level ``instructions`` in ``response.create`` *replace* the session's instructions
for that response. A greeting or goodbye sent as only its own line would lose the persona,
the lender and the compliance rules for that turn, so :meth:`SessionConfig.response_instructions`
always sends the session's instructions with the extra line added after them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiosk.config import RealtimeSettings

# Realtime models that reason (``reasoning.effort``, ``parallel_tool_calls`` apply to them).
REASONING_PREFIXES = ("gpt-realtime-2",)

# Added to the retried request after a failed response (rate limit, server error).
RETRY_LINE = (
    "Your previous reply did not reach the visitor because of a brief service problem: "
    "apologise in a few words for the delay, then continue."
)


def is_reasoning_model(model: str) -> bool:
    """True for Realtime models that take ``reasoning.effort`` (gpt-realtime-2 and later)."""
    return model.startswith(REASONING_PREFIXES)


@dataclass(frozen=True)
class SessionConfig:
    """What the session.update says: the ``[realtime]`` settings as they are, plus what the
    composition root adds (the rendered instructions and the tools' schemas)."""

    settings: RealtimeSettings
    instructions: str
    tools: tuple[dict[str, Any], ...] = ()
    speed: float = 1.0

    def session_object(self) -> dict[str, Any]:
        """The GA ``session`` object of a full ``session.update``."""
        r = self.settings
        turn: dict[str, Any] = {
            "type": "server_vad",
            "threshold": r.vad_threshold,
            "prefix_padding_ms": r.prefix_padding_ms,
            "silence_duration_ms": r.silence_duration_ms,
            "create_response": True,
            "interrupt_response": r.interrupt_response,
        }
        if r.idle_timeout_ms is not None:
            turn["idle_timeout_ms"] = r.idle_timeout_ms
        session: dict[str, Any] = {
            "type": "realtime",
            "model": r.model,
            "output_modalities": ["audio"],
            "instructions": self.instructions,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "noise_reduction": {"type": "far_field"},
                    "transcription": {"model": r.transcription_model, "language": r.language},
                    "turn_detection": turn,
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "voice": r.voice,
                    "speed": self.speed,
                },
            },
            "tools": list(self.tools),
            "tool_choice": "auto",
            "max_output_tokens": r.max_output_tokens,
        }
        if r.reasoning_effort is not None and is_reasoning_model(r.model):
            session["reasoning"] = {"effort": r.reasoning_effort}
        return session

    def response_instructions(self, extra: str | None) -> str | None:
        """Instructions for a ``response.create``: the session's, with ``extra`` added (None: none)."""
        if not extra:
            return None
        if not self.instructions:
            return extra
        return f"{self.instructions}\n\n{extra}"
