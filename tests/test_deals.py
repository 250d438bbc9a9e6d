"""analyzeDeal against numpy-financial, and the domain's edge cases."""

from __future__ import annotations

import numpy_financial as npf
import pytest

from kiosk.errors import ToolError
from kiosk.tools.deals import AnalyzeDealArgs, analyze, monthly_payment

CASES = [
    # price, down %, rate %, years
    (400_000, 25, 7.5, 30),
    (250_000, 20, 6.875, 30),
    (180_000, 30, 8.25, 15),
    (1_200_000, 35, 9.99, 25),
    (300_000, 20, 0.0, 30),
    (500_000, 10, 12.0, 10),
    (220_000, 20, 0.0, 15),  # 0 % over 15 years
    (350_000, 100, 7.25, 30),  # 100 % down: no loan, no payment
    (275_000, 0, 6.5, 15),  # nothing down, 15 years
    (90_000, 25, 29.5, 40),  # the extremes the contract allows
    (150_000, 20, 1.0, 1),
]


@pytest.mark.parametrize(("price", "down", "rate", "years"), CASES)
def test_payment_matches_numpy_financial_to_the_cent(price: float, down: float, rate: float, years: int) -> None:
    loan = price * (1 - down / 100)
    expected = -npf.pmt(rate / 1200, years * 12, loan)
    assert round(monthly_payment(loan, rate, years), 2) == round(float(expected), 2)
    out = analyze(AnalyzeDealArgs(purchasePrice=price, downPaymentPercent=down, interestRate=rate,
                                  loanTermYears=years, monthlyRent=price / 100))
    assert out["monthlyPrincipalAndInterest"] == round(float(expected), 2)


def test_the_demo_deal() -> None:
    out = analyze(AnalyzeDealArgs(purchasePrice=400_000, downPaymentPercent=25, interestRate=7.5,
                                  loanTermYears=30, monthlyRent=3200))
    assert out["loanAmount"] == 300_000
    assert out["monthlyTaxes"] == 400
    assert out["monthlyPITIA"] == pytest.approx(2647.64, abs=0.01)
    assert out["dscr"] == pytest.approx(3200 / 2647.64, abs=1e-4)
    # Cash flow after the assumed 10 % operating costs (repairs, management), which the result states.
    assert out["monthlyCashFlow"] == pytest.approx(3040 - 2647.64 - 320, abs=0.01)
    assert any("operating costs 10 %" in s for s in out["assumptions"])
    assert out["interestOnly"] is False
    assert out["meetsOnePercentRule"] is False
    assert "1.21" in out["summary"]


def test_all_cash_has_no_dscr_and_no_payment() -> None:
    out = analyze(AnalyzeDealArgs(purchasePrice=200_000, downPaymentPercent=100, interestRate=7,
                                  loanTermYears=30, monthlyRent=2000))
    assert out["dscr"] is None
    assert out["monthlyPrincipalAndInterest"] == 0
    assert out["cashOnCashReturnPercent"] is not None


def test_fractional_rate_is_read_as_percent_and_said_so() -> None:
    a = analyze(AnalyzeDealArgs(purchasePrice=400_000, downPaymentPercent=25, interestRate=0.075,
                                loanTermYears=30, monthlyRent=3200))
    b = analyze(AnalyzeDealArgs(purchasePrice=400_000, downPaymentPercent=25, interestRate=7.5,
                                loanTermYears=30, monthlyRent=3200))
    assert a["monthlyPrincipalAndInterest"] == b["monthlyPrincipalAndInterest"]
    assert any("interestRate" in s for s in a["assumptions"])
    assert not any("interestRate" in s for s in b["assumptions"])


def test_no_loan_means_no_dscr_through_the_tool_too() -> None:
    out = analyze(AnalyzeDealArgs(purchasePrice=350_000, downPaymentPercent=100, interestRate=7.25,
                                  loanTermYears=15, monthlyRent=2500))
    assert out["dscr"] is None
    assert out["loanAmount"] == 0
    assert "no loan" in out["summary"].lower()
    assert out["monthlyPITIA"] == pytest.approx(350_000 * 1.2 / 1200 + 150, abs=0.01)


def test_a_fraction_that_would_mean_an_absurd_rate_is_refused() -> None:
    with pytest.raises(ToolError, match="not a plausible rate"):
        analyze(AnalyzeDealArgs(purchasePrice=400_000, downPaymentPercent=25, interestRate=0.5,
                                loanTermYears=30, monthlyRent=3200))


# --- by product (issue 17): every expected figure below is computed independently, with
# numpy-financial or by hand from the definitions in DOMAIN.md, never by calling the tool's code.

BRIDGE = {"purchasePrice": 257_143, "downPaymentPercent": 30, "interestRate": 11, "loanTermYears": 1,
          "monthlyRent": 0}


def test_a_bridge_is_interest_only_by_default_and_says_so() -> None:
    loan = 257_143 * 0.70  # ~ $180,000
    interest = -float(npf.ipmt(0.11 / 12, 1, 12, loan))  # the first month's interest = the whole IO payment
    out = analyze(AnalyzeDealArgs(**BRIDGE, productType="hard_money"))
    assert out["interestOnly"] is True
    assert out["monthlyPrincipalAndInterest"] == pytest.approx(interest, abs=0.01)
    assert out["monthlyPrincipalAndInterest"] == pytest.approx(1650, abs=1)
    assert any("interest-only" in s for s in out["assumptions"])
    amortising = analyze(AnalyzeDealArgs(**BRIDGE, productType="hard_money", interestOnly=False))
    assert amortising["monthlyPrincipalAndInterest"] == pytest.approx(-float(npf.pmt(0.11 / 12, 12, loan)), abs=0.01)
    # A DSCR loan amortises unless the visitor asks for interest-only.
    rental = {**DEAL_400K, "productType": "dscr"}
    assert analyze(AnalyzeDealArgs(**rental))["interestOnly"] is False
    io = analyze(AnalyzeDealArgs(**rental, interestOnly=True))
    assert io["monthlyPrincipalAndInterest"] == pytest.approx(300_000 * 0.075 / 12, abs=0.01)


DEAL_400K = {"purchasePrice": 400_000, "downPaymentPercent": 25, "interestRate": 7.5, "loanTermYears": 30,
             "monthlyRent": 3200}


def test_hoa_dues_are_part_of_pitia_and_the_dscr() -> None:
    # A condo: $250k, 20 % down, 7.25 %, 30 years, $1,900 rent, $350 HOA.
    pi = -float(npf.pmt(0.0725 / 12, 360, 200_000))
    pitia = pi + 250_000 * 0.012 / 12 + 150
    args = {"purchasePrice": 250_000, "downPaymentPercent": 20, "interestRate": 7.25, "loanTermYears": 30,
            "monthlyRent": 1900}
    without = analyze(AnalyzeDealArgs(**args))
    with_hoa = analyze(AnalyzeDealArgs(**args, hoaDues=350))
    assert without["dscr"] == pytest.approx(1900 / pitia, abs=1e-4)
    assert with_hoa["dscr"] == pytest.approx(1900 / (pitia + 350), abs=1e-4)
    assert with_hoa["monthlyPITIA"] == pytest.approx(pitia + 350, abs=0.01)
    assert with_hoa["dscr"] < without["dscr"] - 0.15  # 1.08 -> 0.90: the dues cross the 1.00 floor


def test_points_and_closing_costs_are_cash_invested() -> None:
    pi = -float(npf.pmt(0.075 / 12, 360, 300_000))
    flow = 3200 * 0.95 - (pi + 400 + 150) - 3200 * 0.10
    invested = 100_000 + 0.02 * 300_000 + 8_000
    out = analyze(AnalyzeDealArgs(**DEAL_400K, pointsPercent=2, closingCosts=8_000))
    assert out["cashInvested"] == pytest.approx(invested, abs=0.01)
    assert out["cashOnCashReturnPercent"] == pytest.approx(100 * 12 * flow / invested, abs=0.01)
    plain = analyze(AnalyzeDealArgs(**DEAL_400K))
    assert plain["cashOnCashReturnPercent"] == pytest.approx(100 * 12 * flow / 100_000, abs=0.01)


def test_noi_and_cap_rate_count_operating_costs() -> None:
    out = analyze(AnalyzeDealArgs(**DEAL_400K, operatingExpensePercent=8, hoaDues=100))
    noi = 12 * (3200 * 0.95 - 400 - 150 - 100 - 3200 * 0.08)
    assert out["annualNOI"] == pytest.approx(noi, abs=0.01)
    assert out["capRatePercent"] == pytest.approx(100 * noi / 400_000, abs=0.01)


def test_the_flip_calculator_counts_the_rehab_loan() -> None:
    from kiosk.tools.flips import AnalyzeFlipArgs, analyze_flip_numbers

    # $200k purchase, $60k rehab, $350k ARV, 6 months, 11 %, 2 points, 90 % of purchase + 100 % of rehab.
    loan = 0.9 * 200_000 + 60_000
    interest = -6 * float(npf.ipmt(0.11 / 12, 1, 6, loan))
    spent = 260_000 + 0.02 * loan + 0.02 * 200_000 + interest + 6 * (200_000 * 0.012 / 12 + 150)
    profit = 350_000 * 0.94 - spent
    cash = spent - loan
    out = analyze_flip_numbers(AnalyzeFlipArgs(purchasePrice=200_000, rehabBudget=60_000, afterRepairValue=350_000,
                                               holdingMonths=6, interestRate=11))
    assert out["loanAmount"] == pytest.approx(loan, abs=0.01)
    assert out["loanToCostPercent"] == pytest.approx(100 * loan / 260_000, abs=0.01)  # 92.3 %, not 69 %
    assert out["loanToArvPercent"] == pytest.approx(100 * loan / 350_000, abs=0.01)
    assert out["totalInterest"] == pytest.approx(interest, abs=0.01)
    assert out["profit"] == pytest.approx(profit, abs=0.01)
    assert out["roiPercent"] == pytest.approx(100 * profit / cash, abs=0.01)
    assert out["annualizedRoiPercent"] == pytest.approx(100 * profit / cash * 2, abs=0.01)
    assert out["seventyPercentRuleMaxOffer"] == pytest.approx(350_000 * 0.7 - 60_000, abs=0.01)
    assert len(out["assumptions"]) >= 5  # every default is stated


def test_every_result_lists_its_assumptions() -> None:
    out = analyze(AnalyzeDealArgs(**DEAL_400K))
    said = " ".join(out["assumptions"])
    for default in ("property tax 1.2 %", "insurance $150", "vacancy 5 %", "no HOA dues", "amortise over 360"):
        assert default in said
