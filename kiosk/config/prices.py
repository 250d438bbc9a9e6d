"""What the models cost: the built-in price table, keyed by model (prices belong to a model).

From OpenAI's model pages (late 2026). ``[cost.prices."<model>"]`` in kiosk.toml adds a
model or replaces one's prices; the rest of this table stays in force.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ModelPrices(BaseModel):
    """One model's prices in US dollars: per million tokens, or per minute of transcribed audio."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text_in: float = Field(0.0, ge=0, description="Text input tokens, per million.")
    text_cached_in: float = Field(0.0, ge=0, description="Cached text input tokens, per million.")
    audio_in: float = Field(0.0, ge=0, description="Audio input tokens, per million.")
    audio_cached_in: float = Field(0.0, ge=0, description="Cached audio input tokens, per million.")
    text_out: float = Field(0.0, ge=0, description="Text output tokens, per million.")
    audio_out: float = Field(0.0, ge=0, description="Audio output tokens, per million.")
    audio_minute: float = Field(0.0, ge=0, description="Transcribed audio, per minute (duration-billed models).")


def _realtime(text: tuple[float, float, float], audio: tuple[float, float, float]) -> ModelPrices:
    return ModelPrices(text_in=text[0], text_cached_in=text[1], text_out=text[2],
                       audio_in=audio[0], audio_cached_in=audio[1], audio_out=audio[2])  # fmt: skip


LEGACY_PRICE_KEYS = ("price_audio_in", "price_audio_cached_in", "price_text_in", "price_audio_out", "price_text_out")


# Per million tokens: (input, cached input, output) for text, then for audio.
DEFAULT_PRICES: dict[str, ModelPrices] = {
    "gpt-realtime-2.1": _realtime((4.0, 0.4, 24.0), (32.0, 0.4, 64.0)),
    "gpt-realtime-2.1-mini": _realtime((0.6, 0.06, 2.4), (10.0, 0.3, 20.0)),
    "gpt-realtime-2": _realtime((4.0, 0.4, 24.0), (32.0, 0.4, 64.0)),
    "gpt-realtime-1.5": _realtime((4.0, 0.4, 16.0), (32.0, 0.4, 64.0)),
    "gpt-realtime": _realtime((4.0, 0.4, 16.0), (32.0, 0.4, 64.0)),  # shut down 2027-01-20
    "gpt-realtime-mini": _realtime((0.6, 0.06, 2.4), (10.0, 0.3, 20.0)),  # shut down 2027-01-20
    "gpt-transcribe": ModelPrices(audio_minute=0.0045),
    "gpt-live-transcribe": ModelPrices(audio_minute=0.017),
    "gpt-realtime-whisper": ModelPrices(audio_minute=0.017),
    "gpt-4o-mini-transcribe": ModelPrices(audio_in=1.25, text_out=5.0),  # shut down 2027-02-26
    "gpt-4o-transcribe": ModelPrices(audio_in=2.5, text_out=10.0),  # shut down 2027-02-26
    "whisper-1": ModelPrices(audio_minute=0.006),  # shut down 2027-02-26
}


class CostSettings(BaseModel):
    """Cost guards, from ``response.done`` and transcription usage, priced per model; budgets 0 = no limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")  # as every settings section

    prices: dict[str, ModelPrices] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="Prices per model name; entries in the file add to (or replace) the built-in table.",
    )
    session_max_tokens: int = Field(150_000, ge=0, description="One visitor session's token budget.")
    session_max_usd: float = Field(2.0, ge=0, description="One visitor session's money budget.")
    daily_max_tokens: int = Field(3_000_000, ge=0, description="The kiosk's daily token budget (local day).")
    daily_max_usd: float = Field(50.0, ge=0, description="The kiosk's daily money budget (local day).")

    # Flat prices of kiosks configured before prices were per model: an upgraded kiosk keeps
    # its kiosk.toml, so these are accepted and ignored, and `kiosk config check` says so.
    price_audio_in: float | None = Field(None, description="Ignored: prices are per model in [cost.prices].")
    price_audio_cached_in: float | None = Field(None, description="Ignored: prices are per model.")
    price_text_in: float | None = Field(None, description="Ignored: prices are per model.")
    price_audio_out: float | None = Field(None, description="Ignored: prices are per model.")
    price_text_out: float | None = Field(None, description="Ignored: prices are per model.")

    def legacy_keys(self) -> list[str]:
        """The flat price settings a file still sets (ignored)."""
        return [k for k in LEGACY_PRICE_KEYS if getattr(self, k) is not None]

    @field_validator("prices", mode="before")
    @classmethod
    def _over_the_built_in_table(cls, value: Any) -> Any:
        # A file names the models it changes or adds; the others keep their prices.
        return {**DEFAULT_PRICES, **value} if isinstance(value, Mapping) else value
