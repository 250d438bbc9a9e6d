"""Bounded numeric argument types shared by every tool: what a model may send, and no more.

A model's arguments are untrusted text. Every number a tool takes is finite (no NaN or
infinity, spelt as strings or as 1e999), inside a plausible range for its meaning (a loan
term of at least a month, a price of at least $1,000, rates up to 30 %), so no formula
downstream can divide by zero, overflow or return a number nobody can say. A value outside
its range fails validation, and the registry turns that into ``{"error", "fix"}`` naming
the field, which the model can repair.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MIN_TERM_YEARS = 1 / 12  # one month: shorter is not a loan
MAX_TERM_YEARS = 40
MIN_PRICE = 1_000.0  # a property below this is a typo (or a denormal), not a deal
MAX_MONEY = 1e9


def _no_subnormal(value: float) -> float:
    # 5e-324 passes "> 0" but makes every ratio it divides explode: a real amount is never this small.
    if value != 0 and abs(value) < 1e-6:
        raise ValueError("is too small to be a real amount; send 0 or a plausible value")
    return value


class ToolArgs(BaseModel):
    """Base of tool argument models: unknown fields ignored, non-finite numbers refused."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


Price = Annotated[float, Field(ge=MIN_PRICE, le=MAX_MONEY), AfterValidator(_no_subnormal)]
Money = Annotated[float, Field(ge=0, le=MAX_MONEY), AfterValidator(_no_subnormal)]
MonthlyMoney = Annotated[float, Field(ge=0, le=1e7), AfterValidator(_no_subnormal)]
Percent = Annotated[float, Field(ge=0, le=100), AfterValidator(_no_subnormal)]
Rate = Annotated[float, Field(ge=0, le=30), AfterValidator(_no_subnormal)]
TermYears = Annotated[float, Field(ge=MIN_TERM_YEARS, le=MAX_TERM_YEARS)]
Months = Annotated[int, Field(ge=1, le=60)]
