"""The lender's business rules as configuration: rubric, rate sheet, booking links.

Everything a lender tunes lives in ``lending.toml`` (see ``config/lending.toml``), never in
code: points per factor, the bands that award them, disposition thresholds, indicative
rates and max LTV per product, booking links per product and branch. (The follow-up
e-mail is a template next to the others: ``templates/visitor_email.txt``.) The file is
validated once at start; a mistake is a ConfigError naming the field.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kiosk.config import format_validation_error
from kiosk.errors import ConfigError

PRODUCTS = ("dscr", "hard_money", "fix_flip", "portfolio")
FACTORS = ("product_fit", "deal_strength", "leverage", "timeline", "contact")
TIMELINES = ("under_30_days", "30_to_90_days", "over_90_days", "just_looking", "unknown")
EXPERIENCE = ("none", "one_to_two", "three_plus", "unknown")  # completed flips or bridge projects
EXITS = ("sale", "refinance", "unknown")

Flag = Literal["none", "soft", "hard"]

FOLLOWUP_MOVED = (
    "[followup] is no longer read here: the follow-up e-mail moved to templates/visitor_email.txt "
    "(kiosk.toml [notify] templates_dir; $placeholders instead of {placeholders}) and its postal address "
    "to kiosk.toml [notify] postal_address; copy your text there and delete [followup] from this file"
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Band(_Frozen):
    """Points for a value in ``[min, max)``; an open end is unbounded."""

    min: float | None = None
    max: float | None = None
    points: int = Field(ge=0)
    reason: str = Field(min_length=1)
    flag: Flag = "none"

    def holds(self, value: float) -> bool:
        """True when ``value`` falls in this band."""
        return (self.min is None or value >= self.min) and (self.max is None or value < self.max)


class ProductFit(_Frozen):
    """Product-fit points when the product's key facts are missing, and portfolio size."""

    partial: int = Field(ge=0)
    portfolio_min_properties: int = Field(ge=1)


class Missing(_Frozen):
    """Points given when the numbers a factor needs are unknown."""

    deal_strength: int = Field(ge=0)
    leverage: int = Field(ge=0)


def _names_exactly(where: str, table: Mapping[str, object], names: Collection[str]) -> None:
    """ValueError unless ``table``'s keys are exactly ``names`` (a rubric table with a typo or
    a missing answer would score silently wrong)."""
    if set(table) != set(names):
        raise ValueError(f"{where} must name exactly {', '.join(names)}")


class AssetBased(_Frozen):
    """Hard money and fix-and-flip: judged on the asset, the exit and the investor's experience.

    Deal strength = the value band (``flip_bands`` on all-in cost / ARV for fix_flip,
    ``bridge_bands`` on loan / value for hard_money) + experience + exit points; leverage =
    ``ltc_bands`` on loan-to-cost with the rehab loan counted. DSCR bands never apply.
    """

    bridge_bands: list[Band] = Field(min_length=1)
    ltc_bands: list[Band] = Field(min_length=1)
    experience: dict[str, int]
    exit: dict[str, int]

    @model_validator(mode="after")
    def _known_answers(self) -> AssetBased:
        _names_exactly("rubric.asset_based.experience", self.experience, EXPERIENCE)
        _names_exactly("rubric.asset_based.exit", self.exit, EXITS)
        return self


class Rubric(_Frozen):
    """The explainable scoring rubric."""

    version: str = Field(min_length=1)
    qualified_min: int = Field(ge=0, le=100)
    nurture_min: int = Field(ge=0, le=100)
    points: dict[str, int]
    product_fit: ProductFit
    missing: Missing
    dscr_bands: list[Band] = Field(min_length=1)
    flip_bands: list[Band] = Field(min_length=1)
    leverage_bands: list[Band] = Field(min_length=1)
    asset_based: AssetBased
    timeline: dict[str, int]

    @model_validator(mode="after")
    def _consistent(self) -> Rubric:
        _names_exactly("rubric.points", self.points, FACTORS)
        _names_exactly("rubric.timeline", self.timeline, TIMELINES)
        ab = self.asset_based
        value_max = max(b.points for b in self.flip_bands + ab.bridge_bands)
        checks = [
            ("deal_strength", [b.points for b in self.dscr_bands] + [self.missing.deal_strength]),
            ("deal_strength", [value_max + max(ab.experience.values()) + max(ab.exit.values())]),
            ("leverage", [b.points for b in self.leverage_bands + ab.ltc_bands] + [self.missing.leverage]),
            ("timeline", list(self.timeline.values())),
            ("product_fit", [self.product_fit.partial]),
        ]
        for factor, values in checks:
            if max(values) > self.points[factor]:
                raise ValueError(f"a {factor} band gives more than rubric.points.{factor}")
        if self.nurture_min > self.qualified_min:
            raise ValueError("rubric.nurture_min must not exceed rubric.qualified_min")
        return self


class Tier(_Frozen):
    """One rate-sheet row: deals with at least ``min_dscr`` get this range and max LTV."""

    min_dscr: float = Field(ge=0)
    rate_min: float = Field(ge=0, le=30)
    rate_max: float = Field(ge=0, le=30)
    max_ltv: float = Field(gt=0, le=100)


class ProductTerms(_Frozen):
    """Indicative terms of one product."""

    name: str = Field(min_length=1)
    tiers: list[Tier] = Field(min_length=1)


class Booking(_Frozen):
    """Booking links by product and by branch (branch keys are ``[branch] branch_name``)."""

    products: dict[str, str] = {}
    branches: dict[str, dict[str, str]] = {}

    def link(self, branch: str, product: str, fallback: str) -> str:
        """The most specific link: branch+product, branch default, product, then the fallback."""
        at_branch = self.branches.get(branch, {})
        return at_branch.get(product) or at_branch.get("default") or self.products.get(product) or fallback


class LendingConfig(_Frozen):
    """Everything in lending.toml."""

    rubric: Rubric
    rate_sheet: dict[str, ProductTerms]
    booking: Booking = Booking()

    @model_validator(mode="after")
    def _every_product(self) -> LendingConfig:
        missing = [p for p in PRODUCTS if p not in self.rate_sheet]
        if missing:
            raise ValueError(f"rate_sheet has no entry for {', '.join(missing)}")
        return self


def load_lending(path: Path) -> LendingConfig:
    """Read and validate lending.toml; ConfigError with one line per problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read lending file: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    # Older lending files carried the follow-up e-mail: say where it went, not "unknown setting".
    problems = [f"{path}: {FOLLOWUP_MOVED}"] if data.pop("followup", None) is not None else []
    try:
        cfg = LendingConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems + [f"{path}: {line}" for line in format_validation_error(exc)]) from None
    if problems:
        raise ConfigError(problems)
    return cfg
