"""Cost guards: what a visit and the day have cost, and whether that is too much.

Pure: usage comes from ``response.done`` and input transcription (summed per visit),
prices from the per-model table in ``[cost.prices]``, budgets from ``[cost]``; the caller
supplies the day's earlier total from the store. A budget of 0 means no limit.

Pricing follows the service's billing: cached input tokens are a subset of the input
tokens and come per modality (``cached_tokens_details``), so each modality's cached tokens
are subtracted from that modality and priced at its own cached rate. Input transcription
is billed at the transcription model's price, by tokens or by audio minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.config import CostSettings, ModelPrices
from kiosk.realtime.usage import Usage

PER_TOKEN = 1e-6  # prices are per million tokens


@dataclass(frozen=True)
class Rates:
    """The prices a kiosk pays: its Realtime model's and its transcription model's."""

    realtime: ModelPrices
    transcription: ModelPrices

    @classmethod
    def of(cls, cost: CostSettings, model: str, transcription_model: str) -> Rates:
        """The rates of the configured models (settings validation guarantees both are priced)."""
        return cls(cost.prices[model], cost.prices[transcription_model])


def cost_usd(usage: Usage, rates: Rates) -> float:
    """The money a usage cost, in US dollars."""
    r, t = rates.realtime, rates.transcription
    fresh_text = max(0, usage.input_text_tokens - usage.cached_text_tokens)
    fresh_audio = max(0, usage.input_audio_tokens - usage.cached_audio_tokens)
    realtime = PER_TOKEN * (
        fresh_text * r.text_in
        + usage.cached_text_tokens * r.text_cached_in
        + fresh_audio * r.audio_in
        + usage.cached_audio_tokens * r.audio_cached_in
        + usage.output_text_tokens * r.text_out
        + usage.output_audio_tokens * r.audio_out
    )
    transcription = PER_TOKEN * (
        usage.transcription_audio_tokens * t.audio_in
        + usage.transcription_text_tokens * t.text_in
        + usage.transcription_output_tokens * t.text_out
    ) + usage.transcription_ms / 60_000 * t.audio_minute
    return realtime + transcription


def token_counts(usage: Usage) -> dict[str, int]:
    """The usage as the store's columns."""
    return usage.asdict()


@dataclass(frozen=True)
class Verdict:
    """Which budgets are spent."""

    session_spent: bool
    daily_spent: bool


def _over(value: float, limit: float) -> bool:
    return limit > 0 and value >= limit


def check(
    session_tokens: int, session_cost: float, day_tokens: int, day_cost: float, budget: CostSettings
) -> Verdict:
    """Compare a session's and the day's totals (the day including this session) with the budgets."""
    return Verdict(
        _over(session_tokens, budget.session_max_tokens) or _over(session_cost, budget.session_max_usd),
        _over(day_tokens, budget.daily_max_tokens) or _over(day_cost, budget.daily_max_usd),
    )
