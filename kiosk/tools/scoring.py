"""scoreLead: an explainable score from deal and program facts only (DOMAIN.md).

The score is pure arithmetic over :class:`LeadFacts` and the configured rubric: per-factor
points, a reason code per factor, the rubric version, and an internal disposition that is
stored but never handed to the model (a visitor must never hear "approved" or "denied").
The model gets only a next step, neutral wording and indicative terms from the rate sheet:
never the number or the reason codes (Reg B: what it does not get, it cannot say). No
input describes the person: only the product, the deal, the timeline, the investor's track
record and exit, and whether contact details are complete. DSCR bands score only rental
products (dscr, portfolio); hard money and flips are scored on the asset (``asset_based``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kiosk.errors import ToolError
from kiosk.leads.records import ScoreRecord
from kiosk.tools.lending import Band, LendingConfig, Rubric
from kiosk.tools.registry import Tool, ToolContext

RENTAL_PRODUCTS = ("dscr", "portfolio")
ASSET_PRODUCTS = ("hard_money", "fix_flip")
DISCLAIMER = "Estimated terms, not a commitment to lend; a loan officer confirms everything."
NEUTRAL_SAY = (
    "A loan officer will review the details; anything said here is an estimate, not a commitment to lend. "
    "Never give the visitor a score or a verdict."
)
NEXT_STEP = {
    "qualified": "Offer to book a call with a loan officer (scheduleCall) to go over estimated terms.",
    "nurture": "Say a specialist can review options with them, and offer to book a call (scheduleCall).",
    "disqualified": (
        "Do not discuss rates; say a specialist can review options with them, and offer to book a call (scheduleCall)."
    ),
}


# Words that turn an estimate into a credit decision (Reg B notice duties): never said, never handed to the model.
VERDICT_WORDS = ("approved", "denied", "declined", "not eligible", "don't qualify", "do not qualify", "disqualified",
                 "rejected")


def verdict_words(text: str) -> list[str]:
    """The verdict words in ``text`` (any case, curly apostrophes too)."""
    low = text.lower().replace("\u2019", "'")
    return [w for w in VERDICT_WORDS if re.search(rf"\b{re.escape(w)}\b", low)]


@dataclass(frozen=True)
class LeadFacts:
    """What a score may look at: program and deal facts, never the person."""

    product: str
    has_analysis: bool = False
    dscr: float | None = None
    ltv_pct: float | None = None  # rentals: loan / price
    all_in_ratio: float | None = None  # flips: (price + rehab) / after-repair value
    ltc_pct: float | None = None  # hard money, flips: (purchase + rehab loan) / (price + rehab)
    loan_to_value_pct: float | None = None  # hard money: loan / (after-repair value, else price)
    experience: str = "unknown"
    exit: str = "unknown"
    timeline: str = "unknown"
    owner_occupied: bool | None = None
    property_count: int | None = None
    contact_fields: int = 0  # of name, e-mail, phone
    phone_consent: bool = False


@dataclass(frozen=True)
class Scored:
    """A score with its explanation."""

    record: ScoreRecord
    flags: dict[str, str]  # factor -> "soft" | "hard"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def facts_from(
    product: str,
    details: dict[str, Any] | None,
    analysis: dict[str, Any] | None,
    contact_fields: int,
    phone_consent: bool,
) -> LeadFacts:
    """Facts from a lead's details (saveLead's optional fields) and its latest deal analysis."""
    d = details or {}
    a = analysis or {}
    inputs = a.get("inputs") or {}
    price = _num(d.get("purchasePrice")) or _num(inputs.get("purchasePrice"))
    loan = _num(a.get("loanAmount"))
    rehab = _num(d.get("rehabBudget")) or _num(inputs.get("rehabBudget")) or 0.0
    arv = _num(d.get("afterRepairValue")) or _num(inputs.get("afterRepairValue"))
    if loan is not None and rehab and a.get("kind") != "flip":
        # A rental-style analysis of a renovation leaves the rehab loan out; flip lenders
        # fund the rehab in full, so the debt is the purchase loan plus the rehab.
        loan += rehab
    ltv = 100 * loan / price if loan is not None and price else None
    value = arv or price  # hard money: the after-repair value when known, else the price
    occupancy = d.get("occupancy")
    count = d.get("propertyCount")
    return LeadFacts(
        product=product,
        has_analysis=analysis is not None,
        dscr=_num(a.get("dscr")),
        ltv_pct=ltv,
        all_in_ratio=(price + rehab) / arv if price and arv else None,
        ltc_pct=100 * loan / (price + rehab) if loan is not None and price else None,
        loan_to_value_pct=100 * loan / value if loan is not None and value else None,
        experience=str(d.get("experience") or "unknown"),
        exit=str(d.get("exitStrategy") or "unknown"),
        timeline=str(d.get("timeline") or "unknown"),
        owner_occupied=None if occupancy is None else occupancy == "owner_occupied",
        property_count=count if isinstance(count, int) else None,
        contact_fields=contact_fields,
        phone_consent=phone_consent,
    )


def _band(bands: list[Band], value: float) -> Band | None:
    return next((b for b in bands if b.holds(value)), None)


def _product_fit(f: LeadFacts, r: Rubric) -> tuple[int, str, str]:
    if f.owner_occupied:
        return 0, "OWNER_OCCUPIED_NOT_ELIGIBLE", "hard"
    few = f.property_count is not None and f.property_count < r.product_fit.portfolio_min_properties
    if f.product == "portfolio" and few:
        return r.product_fit.partial, "PORTFOLIO_BELOW_MIN_PROPERTIES", "soft"
    known = {
        "dscr": f.has_analysis,
        "portfolio": f.has_analysis,
        "fix_flip": f.all_in_ratio is not None,
        "hard_money": f.has_analysis or f.all_in_ratio is not None,
    }.get(f.product, False)
    if known:
        return r.points["product_fit"], "PRODUCT_FACTS_KNOWN", "none"
    return r.product_fit.partial, "PRODUCT_FACTS_MISSING", "none"


def _banded(bands: list[Band], value: float | None, missing: int, missing_reason: str) -> tuple[int, str, str]:
    band = _band(bands, value) if value is not None else None
    if band is None:
        return missing, missing_reason, "none"
    return band.points, band.reason, band.flag


def _asset_strength(f: LeadFacts, r: Rubric) -> tuple[int, str, str]:
    """Hard money and flips: value band + experience + exit, never a DSCR."""
    ab = r.asset_based
    if f.product == "fix_flip":
        pts, reason, flag = _banded(r.flip_bands, f.all_in_ratio, r.missing.deal_strength, "NO_FLIP_NUMBERS")
    else:
        pts, reason, flag = _banded(ab.bridge_bands, f.loan_to_value_pct, r.missing.deal_strength, "NO_BRIDGE_NUMBERS")
    extra = ab.experience.get(f.experience, ab.experience["unknown"]) + ab.exit.get(f.exit, ab.exit["unknown"])
    return min(pts + extra, r.points["deal_strength"]), reason, flag


def score(f: LeadFacts, r: Rubric) -> Scored:
    """Score the facts with the rubric; pure. DSCR bands only for rental products."""
    if f.product in ASSET_PRODUCTS:
        strength = _asset_strength(f, r)
        leverage = _banded(r.asset_based.ltc_bands, f.ltc_pct, r.missing.leverage, "LEVERAGE_UNKNOWN")
    else:
        if f.has_analysis and f.dscr is None:
            strength = (r.missing.deal_strength, "NO_LOAN_NO_DSCR", "none")
        else:
            strength = _banded(r.dscr_bands, f.dscr, r.missing.deal_strength, "NO_DEAL_NUMBERS")
        leverage = _banded(r.leverage_bands, f.ltv_pct, r.missing.leverage, "LEVERAGE_UNKNOWN")
    contact_max = r.points["contact"]
    contact_pts = round(contact_max * min(max(f.contact_fields, 0), 3) / 3)
    factors = {
        "product_fit": _product_fit(f, r),
        "deal_strength": strength,
        "leverage": leverage,
        "timeline": (r.timeline.get(f.timeline, r.timeline["unknown"]), f"TIMELINE_{f.timeline.upper()}", "none"),
        "contact": (contact_pts, "CONTACT_COMPLETE" if contact_pts == contact_max else "CONTACT_INCOMPLETE", "none"),
    }
    points = {k: v[0] for k, v in factors.items()}
    reasons = [v[1] for v in factors.values()]
    flags = {k: v[2] for k, v in factors.items() if v[2] != "none"}
    total = sum(points.values())
    if "hard" in flags.values() or total < r.nurture_min:
        disposition = "disqualified"
    elif total >= r.qualified_min and not flags and f.phone_consent:
        disposition = "qualified"
    else:
        disposition = "nurture"
    record = ScoreRecord(
        total=total, disposition=disposition, points=points, reasons=reasons, rubric_version=r.version
    )
    return Scored(record=record, flags=flags)


def indicative_terms(cfg: LendingConfig, product: str, dscr: float | None) -> dict[str, Any]:
    """Rate range and max LTV from the rate sheet; the DSCR picks the tier for rental products."""
    terms = cfg.rate_sheet[product]
    tiers = sorted(terms.tiers, key=lambda t: t.min_dscr, reverse=True)
    if product in RENTAL_PRODUCTS and dscr is not None:
        tier = next((t for t in tiers if dscr >= t.min_dscr), tiers[-1])
        low, high, ltv = tier.rate_min, tier.rate_max, tier.max_ltv
    else:
        # Without a DSCR the honest statement is the whole range of the product.
        low = min(t.rate_min for t in tiers)
        high = max(t.rate_max for t in tiers)
        ltv = max(t.max_ltv for t in tiers)
    return {
        "product": terms.name,
        "rateRangePercent": [low, high],
        "maxLtvPercent": ltv,
        "say": f"Estimated rates for a {terms.name} run about {low:g} to {high:g} percent, "
        f"with up to {ltv:g} percent loan-to-value; estimated terms, not a commitment to lend.",
    }


def explain(lead_id: str, scored: Scored, cfg: LendingConfig, product: str, dscr: float | None) -> dict[str, Any]:
    """The model's view of a score: the next step, neutral wording and indicative terms only.

    Never the number, the factors, the reason codes or the disposition (Reg B): what the
    model does not get, it cannot say. Weak cases go to a person with the same neutral words.
    """
    hard = "hard" in scored.flags.values()
    return {
        "leadId": lead_id,
        "indicativeTerms": None if hard else indicative_terms(cfg, product, dscr),
        "nextStep": NEXT_STEP[scored.record.disposition],
        "say": NEUTRAL_SAY,
        "disclaimer": DISCLAIMER,
    }


class ScoreLeadArgs(BaseModel):
    """Arguments of scoreLead (the model's contract)."""

    model_config = ConfigDict(extra="ignore")

    leadId: str = Field(min_length=1, max_length=64, description="The leadId saveLead returned in this conversation.")


def require_session_lead(ctx: ToolContext, lead_id: str) -> dict[str, Any]:
    """The lead row, only when it was saved in this visit; else ToolError "unknown lead"."""
    lead = ctx.store.lead(lead_id) if lead_id in ctx.lead_ids else None
    if lead is None or lead["session_id"] != ctx.visit_id:
        raise ToolError("unknown lead", "use the leadId that saveLead returned in this conversation")
    return lead


def score_stored_lead(ctx: ToolContext, cfg: LendingConfig, lead: dict[str, Any]) -> dict[str, Any]:
    """Re-score a stored lead on its details and the freshest analysis; store and explain it."""
    stored = json.loads(lead["analysis_json"]) if lead.get("analysis_json") else None
    analysis = ctx.latest_analysis if ctx.latest_analysis is not None else stored
    details = json.loads(lead["details_json"]) if lead.get("details_json") else None
    contact = sum(1 for k in ("name", "email", "phone") if lead.get(k))
    consent = ctx.store.consent(lead["id"]) is not None
    facts = facts_from(lead["product_type"], details, analysis, contact, consent)
    scored = score(facts, cfg.rubric)
    ctx.store.save_score(lead["id"], scored.record, analysis if analysis is not stored else None)
    return explain(lead["id"], scored, cfg, lead["product_type"], facts.dscr)


def make_tool(cfg: LendingConfig) -> Tool:
    """The scoreLead tool over the configured rubric and rate sheet."""

    def score_lead(args: ScoreLeadArgs, ctx: ToolContext) -> dict[str, Any]:
        return score_stored_lead(ctx, cfg, require_session_lead(ctx, args.leadId.strip()))

    return Tool(
        name="scoreLead",
        description=(
            "Score a saved lead (saveLead already does this once) and get indicative terms from the rate "
            "sheet. Explain them as estimated terms, not a commitment to lend; never say approved or denied."
        ),
        args=ScoreLeadArgs,
        func=score_lead,
    )
