"""Scoring by product and what the model is told (issue 17, points 2 and 6).

DSCR bands judge rentals only; a bridge or a flip is judged on the asset, the exit and the
investor's experience. The model never receives a number, a reason code or a verdict.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiosk.leads.store import Store
from kiosk.sim.scenario import load_scenario, scenario_names
from kiosk.tools.scoring import LeadFacts, explain, score, verdict_words
from tests.toolkit import DRAFT, call, lending, make_ctx, make_registry

REG = make_registry()
CFG = lending()
# A normal 12-month bridge: $180k at 11 %, interest-only $1,650 a month, on a $257,143 purchase.
BRIDGE = {"purchasePrice": 257_143, "downPaymentPercent": 30, "interestRate": 11, "loanTermYears": 1,
          "monthlyRent": 0, "productType": "hard_money"}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "k.db")
    yield s  # type: ignore[misc]
    s.close()


def test_a_twelve_month_bridge_is_not_disqualified(store: Store) -> None:
    ctx = make_ctx(store)
    deal = call(REG, "analyzeDeal", BRIDGE, ctx)
    assert deal["monthlyPrincipalAndInterest"] == pytest.approx(1650, abs=1)
    saved = call(REG, "saveLead", {"leadDraft": {**DRAFT, "productType": "hard_money", "exitStrategy": "refinance"}},
                 ctx)
    row = store.latest_score(saved["leadId"])
    assert row is not None and row["disposition"] != "disqualified"
    reasons = json.loads(row["reasons_json"])
    assert not any(r.startswith("DSCR") for r in reasons), reasons
    assert "LOAN_TO_VALUE_65_TO_75" in reasons
    assert saved["followUp"]["indicativeTerms"]["product"] == "hard money bridge loan"


def test_flips_count_the_rehab_loan_in_loan_to_cost(store: Store) -> None:
    ctx = make_ctx(store)
    flip = {"purchasePrice": 200_000, "rehabBudget": 60_000, "afterRepairValue": 350_000, "holdingMonths": 6,
            "interestRate": 11}
    out = call(REG, "analyzeFlip", flip, ctx)
    saved = call(REG, "saveLead", {"leadDraft": {**DRAFT, "productType": "fix_flip", "experience": "three_plus",
                                                 "exitStrategy": "sale", "timeline": "under_30_days"}}, ctx)
    row = store.latest_score(saved["leadId"])
    assert row is not None
    assert out["loanToCostPercent"] == pytest.approx(92.31, abs=0.01)
    assert "LTC_90_TO_95" in json.loads(row["reasons_json"])
    # All-in 74 % of ARV (14) + three or more flips (5) + selling (5): 24 of 30.
    assert json.loads(row["points_json"])["deal_strength"] == 24
    assert row["disposition"] == "qualified"


def test_dscr_bands_still_judge_rentals() -> None:
    weak = LeadFacts(product="dscr", has_analysis=True, dscr=0.6, ltv_pct=75, contact_fields=3, phone_consent=True)
    assert score(weak, CFG.rubric).record.disposition == "disqualified"
    bridge = LeadFacts(product="hard_money", has_analysis=True, dscr=0.0, ltc_pct=70, loan_to_value_pct=70,
                       contact_fields=3, phone_consent=True)
    assert score(bridge, CFG.rubric).record.disposition != "disqualified"


@pytest.mark.parametrize(
    "facts",
    [
        LeadFacts(product="dscr", has_analysis=True, dscr=1.4, ltv_pct=70, contact_fields=3, phone_consent=True),
        LeadFacts(product="dscr", owner_occupied=True, contact_fields=3),
        LeadFacts(product="dscr", has_analysis=True, dscr=0.5, ltv_pct=95, contact_fields=1),
        LeadFacts(product="fix_flip", all_in_ratio=0.98, ltc_pct=99, contact_fields=3, phone_consent=True),
    ],
)
def test_the_model_gets_a_next_step_never_a_score_or_reason_code(facts: LeadFacts) -> None:
    scored = score(facts, CFG.rubric)
    out = explain("lead-1", scored, CFG, facts.product, facts.dscr)
    text = json.dumps(out)
    assert set(out) == {"leadId", "indicativeTerms", "nextStep", "say", "disclaimer"}
    for reason in scored.record.reasons:
        assert reason not in text
    assert str(scored.record.total) not in text.replace("lead-1", "")
    assert not verdict_words(text)


def test_no_scenario_has_the_assistant_speak_a_verdict() -> None:
    # The demo runner also checks every run's transcript and tool outputs (_reg_b_check).
    for name in scenario_names():
        sc = load_scenario(name)
        lines = [r.say for r in (sc.greeting, sc.fallback, sc.idle, sc.goodbye) if r is not None]
        lines += [t.reply.say for t in sc.turns if t.reply is not None]
        for line in lines:
            assert not verdict_words(line), (name, line)


@pytest.mark.parametrize("text", ["You're approved!", "Sorry, you don't qualify.", "You are NOT ELIGIBLE",
                                  "we declined it", "You don\u2019t qualify"])
def test_verdict_words_are_found(text: str) -> None:
    assert verdict_words(text)
