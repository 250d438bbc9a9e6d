"""Token usage as the service reports it, read defensively: a response's and a transcription's.

``response.done`` carries ``usage`` with input and output tokens by modality. Cached input
tokens are a *subset* of the input tokens and mix text and audio
(``cached_tokens_details``), so they are kept per modality; each is priced at its own cached
rate and subtracted from its own modality (:mod:`kiosk.budget`). Input transcription is
billed apart, at the transcription model's price, from the ``usage`` of
``conversation.item.input_audio_transcription.completed``: tokens or audio seconds.

Anything that is not a plausible count (a string, a list, a negative or absurdly large
number) counts as zero: a hostile or broken frame must neither crash the kiosk nor turn
into a bill of 10^30 tokens.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_COUNT = 10**9  # per report; larger is garbage, not usage


def count(data: Any, key: str) -> int:
    """``data[key]`` as a token count: a non-negative int, else 0 (bools are not counts)."""
    if not isinstance(data, Mapping):
        return 0
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(0, min(value, MAX_COUNT))


def _obj(data: Any, key: str) -> Mapping[str, Any]:
    value = data.get(key) if isinstance(data, Mapping) else None
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Usage:
    """Token usage of one response or transcription, or a sum of several."""

    input_tokens: int = 0
    output_tokens: int = 0
    input_audio_tokens: int = 0
    input_text_tokens: int = 0
    cached_tokens: int = 0
    output_audio_tokens: int = 0
    output_text_tokens: int = 0
    cached_text_tokens: int = 0
    cached_audio_tokens: int = 0
    transcription_audio_tokens: int = 0  # token-billed transcription models
    transcription_text_tokens: int = 0
    transcription_output_tokens: int = 0
    transcription_ms: int = 0  # duration-billed transcription models

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        """Fields in declaration order."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def asdict(self) -> dict[str, int]:
        """Fields by name (the store's columns)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def tokens(self) -> int:
        """Realtime input plus output tokens (the token budgets count these)."""
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_response(cls, usage: Any) -> Usage:
        """Read ``response.done.response.usage`` (missing or malformed parts count as zero).

        Without ``cached_tokens_details`` the cached tokens are taken from the text input
        first: text is the cheaper modality, so the estimate errs on the side of cost.
        """
        if not isinstance(usage, Mapping):
            return cls()
        inp, out = _obj(usage, "input_token_details"), _obj(usage, "output_token_details")
        text_in, audio_in = count(inp, "text_tokens"), count(inp, "audio_tokens")
        cached = count(inp, "cached_tokens")
        details = _obj(inp, "cached_tokens_details")
        if details:
            cached_text = min(count(details, "text_tokens"), text_in)
            cached_audio = min(count(details, "audio_tokens"), audio_in)
        else:
            cached_text = min(cached, text_in)
            cached_audio = min(cached - cached_text, audio_in)
        return cls(
            input_tokens=count(usage, "input_tokens"),
            output_tokens=count(usage, "output_tokens"),
            input_audio_tokens=audio_in,
            input_text_tokens=text_in,
            cached_tokens=cached,
            output_audio_tokens=count(out, "audio_tokens"),
            output_text_tokens=count(out, "text_tokens"),
            cached_text_tokens=cached_text,
            cached_audio_tokens=cached_audio,
        )

    @classmethod
    def from_transcription(cls, usage: Any) -> Usage:
        """Read the ``usage`` of an input transcription: ``tokens`` or ``duration`` billing."""
        if not isinstance(usage, Mapping):
            return cls()
        if usage.get("type") == "duration":
            seconds = usage.get("seconds")
            ok = isinstance(seconds, int | float) and not isinstance(seconds, bool) and math.isfinite(seconds)
            ms = int(min(max(float(seconds), 0.0), 86_400.0) * 1000) if ok else 0  # type: ignore[arg-type]
            return cls(transcription_ms=ms)
        details = _obj(usage, "input_token_details")
        audio, text = count(details, "audio_tokens"), count(details, "text_tokens")
        if not details:
            audio = count(usage, "input_tokens")  # all of it is the visitor's audio
        return cls(
            transcription_audio_tokens=audio,
            transcription_text_tokens=text,
            transcription_output_tokens=count(usage, "output_tokens"),
        )
