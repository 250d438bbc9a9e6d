"""Cost guards: what a visit and the day have cost, and whether that is too much.

Pure: usage comes from ``response.done`` (summed per session by the link), prices and
budgets from ``[cost]``; the caller supplies the day's earlier total from the store. A
budget of 0 means no limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.config import CostSettings
from kiosk.realtime.session import Usage

PER_TOKEN = 1e-6  # prices are per million tokens


def cost_usd(usage: Usage, prices: CostSettings) -> float:
    """The money a usage cost. Cached input is billed at its own price, not on top."""
    fresh_audio = max(0, usage.input_audio_tokens - usage.cached_tokens)
    return PER_TOKEN * (
        fresh_audio * prices.price_audio_in
        + usage.cached_tokens * prices.price_audio_cached_in
        + usage.input_text_tokens * prices.price_text_in
        + usage.output_audio_tokens * prices.price_audio_out
        + usage.output_text_tokens * prices.price_text_out
    )


def token_counts(usage: Usage) -> dict[str, int]:
    """The usage as the store's columns."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "input_audio_tokens": usage.input_audio_tokens,
        "input_text_tokens": usage.input_text_tokens,
        "cached_tokens": usage.cached_tokens,
        "output_audio_tokens": usage.output_audio_tokens,
        "output_text_tokens": usage.output_text_tokens,
    }


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
