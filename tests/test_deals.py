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
    assert out["monthlyCashFlow"] == pytest.approx(3040 - 2647.64, abs=0.01)
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
    assert b["assumptions"] == []


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
