"""The explainable rubric from lending.toml: bands, hard stops, dispositions, wording, fairness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.errors import ConfigError
from kiosk.tools.lending import load_lending
from kiosk.tools.scoring import LeadFacts, explain, indicative_terms, score
from tests.toolkit import CONFIG, lending

CFG = lending()
RUBRIC = CFG.rubric
STRONG = LeadFacts(product="dscr", has_analysis=True, dscr=1.3, ltv_pct=70, timeline="under_30_days",
                   contact_fields=3, phone_consent=True)


def _with(**changes: object) -> LeadFacts:
    return LeadFacts(**{**STRONG.__dict__, **changes})  # type: ignore[arg-type]


def test_a_strong_rental_deal_is_qualified_with_full_reasons() -> None:
    s = score(STRONG, RUBRIC).record
    assert s.points == {"product_fit": 25, "deal_strength": 30, "leverage": 16, "timeline": 15, "contact": 10}
    assert s.total == 96 and s.disposition == "qualified"
    assert s.reasons == ["PRODUCT_FACTS_KNOWN", "DSCR_AT_LEAST_1_25", "LTV_65_TO_75", "TIMELINE_UNDER_30_DAYS",
                         "CONTACT_COMPLETE"]
    assert s.rubric_version == "2025.2"


@pytest.mark.parametrize(
    ("changes", "disposition", "reason"),
    [
        ({"owner_occupied": True}, "disqualified", "OWNER_OCCUPIED_NOT_ELIGIBLE"),
        ({"dscr": 0.7}, "disqualified", "DSCR_BELOW_0_75"),
        ({"dscr": 0.9}, "nurture", "DSCR_0_75_TO_0_99_NO_RATIO_PROGRAM"),  # soft flag despite >= 70 points
        ({"dscr": 1.0}, "qualified", "DSCR_1_00_TO_1_24"),
        ({"ltv_pct": 85}, "nurture", "LTV_ABOVE_80"),
        ({"phone_consent": False}, "nurture", "CONTACT_COMPLETE"),
        ({"has_analysis": False, "dscr": None, "ltv_pct": None, "timeline": "just_looking"}, "nurture",
         "NO_DEAL_NUMBERS"),
        ({"product": "portfolio", "property_count": 2}, "nurture", "PORTFOLIO_BELOW_MIN_PROPERTIES"),
    ],
)
def test_dispositions_follow_points_and_flags(changes: dict[str, object], disposition: str, reason: str) -> None:
    s = score(_with(**changes), RUBRIC).record
    assert s.disposition == disposition
    assert reason in s.reasons


def test_flips_are_judged_on_all_in_cost_to_arv() -> None:
    good = score(_with(product="fix_flip", dscr=None, all_in_ratio=0.68), RUBRIC).record
    thin = score(_with(product="fix_flip", dscr=None, all_in_ratio=0.85), RUBRIC).record
    # Value band 20 (or 6) + experience and exit unknown (1 + 1): never a DSCR band.
    assert good.points["deal_strength"] == 22 and "ALL_IN_COST_AT_MOST_70_PCT_ARV" in good.reasons
    assert thin.points["deal_strength"] == 8 and thin.disposition == "nurture"
    assert not any(r.startswith("DSCR") for r in good.reasons + thin.reasons)


def test_all_cash_deals_are_not_scored_on_a_dscr() -> None:
    s = score(_with(dscr=None, ltv_pct=0.0), RUBRIC).record
    assert "NO_LOAN_NO_DSCR" in s.reasons
    assert s.points["deal_strength"] == RUBRIC.missing.deal_strength


@given(st.text(max_size=40), st.text(max_size=40))
def test_the_score_never_sees_the_person(name_a: str, name_b: str) -> None:
    # LeadFacts has no field for a name, voice, age or place: the same deal scores the same.
    assert "name" not in LeadFacts.__dataclass_fields__
    assert score(STRONG, RUBRIC) == score(_with(), RUBRIC)


@pytest.mark.parametrize("changes", [{}, {"dscr": 0.7}, {"owner_occupied": True}, {"dscr": 0.9}])
def test_what_the_model_hears_never_says_approved_or_denied(changes: dict[str, object]) -> None:
    facts = _with(**changes)
    out = explain("id-1", score(facts, RUBRIC), CFG, facts.product, facts.dscr)
    text = json.dumps(out).lower()
    for word in ("approved", "denied", "declined", "disqualified", "qualified", "rejected"):
        assert word not in text
    assert "not a commitment to lend" in text
    assert "disposition" not in out
    if changes.get("owner_occupied") or changes.get("dscr") == 0.7:
        assert out["indicativeTerms"] is None
        assert "specialist" in out["nextStep"]


def test_indicative_terms_come_from_the_rate_sheet() -> None:
    assert indicative_terms(CFG, "dscr", 1.3)["rateRangePercent"] == [6.75, 7.75]
    assert indicative_terms(CFG, "dscr", 1.1)["maxLtvPercent"] == 75
    assert indicative_terms(CFG, "dscr", None)["rateRangePercent"] == [6.75, 9.5]
    assert indicative_terms(CFG, "fix_flip", None)["rateRangePercent"] == [10.0, 12.0]


def test_a_broken_lending_file_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    text = (CONFIG / "lending.toml").read_text().replace("product_fit = 25", "product_fit = 20\nbogus = 5")
    bad = tmp_path / "lending.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_lending(bad)
    assert "rubric.points" in " ".join(err.value.problems)
    bad.write_text((CONFIG / "lending.toml").read_text().replace("[rate_sheet.portfolio]", "[rate_sheet.other]"))
    with pytest.raises(ConfigError, match="portfolio"):
        load_lending(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_lending(tmp_path / "missing.toml")
