"""analyzeDeal: the numbers of a rental deal, as DSCR lenders compute them (DOMAIN.md).

Percentages are numbers (7.5 means 7.5 %). A model sometimes passes 0.075 for 7.5 %: for
``interestRate``, ``downPaymentPercent`` and ``vacancyRate`` a value strictly between 0
and 1 is read as a fraction and multiplied by 100, and the result says so in
``assumptions``. ``propertyTaxRate`` is exempt because 0.3-1 % are real tax rates.
Full precision inside; money is rounded to cents in the output and to whole dollars
in the spoken summary.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kiosk.errors import ToolError
from kiosk.tools.registry import Tool, ToolContext


class AnalyzeDealArgs(BaseModel):
    """Arguments of analyzeDeal (the model's contract)."""

    model_config = ConfigDict(extra="ignore")

    purchasePrice: float = Field(gt=0, le=1e9, description="Purchase price in dollars.")
    downPaymentPercent: float = Field(ge=0, le=100, description="Down payment as a percent of price (25 = 25 %).")
    interestRate: float = Field(ge=0, le=30, description="Annual interest rate in percent (7.5 = 7.5 %).")
    loanTermYears: float = Field(gt=0, le=40, description="Loan term in years.")
    monthlyRent: float = Field(gt=0, le=1e7, description="Gross monthly rent in dollars.")
    propertyTaxRate: float = Field(1.2, ge=0, le=10, description="Property tax, percent of price per year.")
    insurance: float = Field(150, ge=0, le=1e6, description="Insurance in dollars per month.")
    vacancyRate: float = Field(5, ge=0, lt=100, description="Vacancy allowance, percent of rent.")


def monthly_payment(loan: float, annual_rate_pct: float, years: float) -> float:
    """Principal and interest per month: L*r / (1 - (1+r)^-n), r = rate/1200, n = 12*years."""
    if loan <= 0:
        return 0.0
    n = round(12 * years)
    r = annual_rate_pct / 1200.0
    if r == 0:
        return loan / n
    return loan * r / (1.0 - (1.0 + r) ** -n)


def _pct(value: float, name: str, assumptions: list[str]) -> float:
    if 0 < value < 1:
        assumptions.append(f"{name} {value} read as {value * 100:g} %")
        return value * 100
    return value


def analyze(a: AnalyzeDealArgs) -> dict[str, Any]:
    """Compute the deal; pure."""
    assumptions: list[str] = []
    rate = _pct(a.interestRate, "interestRate", assumptions)
    if rate > 30:
        # 0.5 read as a fraction is 50 %: no investor loan costs that, so ask instead of guessing.
        raise ToolError(
            f"interestRate {a.interestRate} read as {rate:g} % is not a plausible rate",
            "send the annual rate in percent, e.g. 7.5 for 7.5 %",
        )
    down_pct = _pct(a.downPaymentPercent, "downPaymentPercent", assumptions)
    vacancy = _pct(a.vacancyRate, "vacancyRate", assumptions)
    price, rent = a.purchasePrice, a.monthlyRent
    loan = price * (1 - down_pct / 100)
    down = price - loan
    pi = monthly_payment(loan, rate, a.loanTermYears)
    taxes = price * a.propertyTaxRate / 1200
    pitia = pi + taxes + a.insurance
    effective_rent = rent * (1 - vacancy / 100)
    cash_flow = effective_rent - pitia
    noi = 12 * (effective_rent - taxes - a.insurance)
    dscr = rent / pitia if loan > 0 else None
    coc = 100 * 12 * cash_flow / down if down > 0 else None
    result: dict[str, Any] = {
        "loanAmount": round(loan, 2),
        "downPayment": round(down, 2),
        "monthlyPrincipalAndInterest": round(pi, 2),
        "monthlyTaxes": round(taxes, 2),
        "monthlyInsurance": round(a.insurance, 2),
        "monthlyPITIA": round(pitia, 2),
        "dscr": round(dscr, 4) if dscr is not None else None,
        "monthlyCashFlow": round(cash_flow, 2),
        "cashOnCashReturnPercent": round(coc, 2) if coc is not None else None,
        "annualNOI": round(noi, 2),
        "capRatePercent": round(100 * noi / price, 2),
        "breakEvenRatio": round(pitia / effective_rent, 4) if effective_rent > 0 else None,
        "meetsOnePercentRule": rent >= 0.01 * price,
        "assumptions": assumptions,
        "disclaimer": "Estimates only, not a quote or a commitment to lend.",
    }
    result["summary"] = _summary(price, down_pct, rate, rent, pitia, dscr, cash_flow)
    return result


def _summary(
    price: float, down_pct: float, rate: float, rent: float, pitia: float, dscr: float | None, cash_flow: float
) -> str:
    flow = f"{'positive' if cash_flow >= 0 else 'negative'} cash flow of about ${abs(cash_flow):,.0f} a month"
    head = (
        f"For a ${price:,.0f} purchase with {down_pct:g}% down at {rate:g}%, the estimated payment "
        f"with taxes and insurance is about ${pitia:,.0f} a month"
    )
    if dscr is None:
        return f"With no loan there is no debt payment; ${rent:,.0f} rent gives an estimated {flow}."
    return f"{head}; ${rent:,.0f} rent gives a DSCR of about {dscr:.2f} and an estimated {flow}."


def analyze_deal(args: AnalyzeDealArgs, ctx: ToolContext) -> dict[str, Any]:
    """The tool: analyze, and keep the result as this visitor's latest analysis."""
    result = analyze(args)
    ctx.latest_analysis = {"inputs": args.model_dump(), **result}
    return result


TOOL = Tool(
    name="analyzeDeal",
    description=(
        "Estimate a rental deal: monthly payment (PITIA), DSCR, cash flow, cash-on-cash return, "
        "cap rate. Percentages as numbers (7.5 = 7.5 %). Say results as estimates."
    ),
    args=AnalyzeDealArgs,
    func=analyze_deal,
)
