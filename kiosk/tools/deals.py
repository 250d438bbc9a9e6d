"""analyzeDeal: the numbers of a rental or bridge deal, as lenders compute them (DOMAIN.md).

Percentages are numbers (7.5 means 7.5 %). A model sometimes passes 0.075 for 7.5 %: for
``interestRate``, ``downPaymentPercent`` and ``vacancyRate`` a value strictly between 0
and 1 is read as a fraction and multiplied by 100, and the result says so in
``assumptions``. ``propertyTaxRate`` is exempt because 0.3-1 % are real tax rates.

Products differ: hard money, bridge and fix-and-flip loans are interest-only by default
(payment = loan x rate / 12), rental loans amortise unless ``interestOnly`` is true. Every
default the tool fills in (taxes, insurance, vacancy, operating costs, the payment type)
is listed in ``assumptions``, so the model can say what the numbers rest on.
Full precision inside; money is rounded to cents in the output and to whole dollars
in the spoken summary.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from kiosk.errors import ToolError
from kiosk.tools.bounds import Money, MonthlyMoney, Percent, Price, Rate, TermYears, ToolArgs
from kiosk.tools.registry import Tool, ToolContext

ProductType = Literal["dscr", "hard_money", "fix_flip", "portfolio"]
INTEREST_ONLY_PRODUCTS = ("hard_money", "fix_flip")
DEFAULTS = {"propertyTaxRate": 1.2, "insurance": 150.0, "vacancyRate": 5.0, "operatingExpensePercent": 10.0}


class AnalyzeDealArgs(ToolArgs):
    """Arguments of analyzeDeal (the model's contract)."""

    purchasePrice: Price = Field(description="Purchase price (or as-is value) in dollars.")
    downPaymentPercent: Percent = Field(description="Down payment as a percent of price (25 = 25 %).")
    interestRate: Rate = Field(description="Annual interest rate in percent (7.5 = 7.5 %).")
    loanTermYears: TermYears = Field(description="Loan term in years (1 = a 12-month bridge; at least 1/12).")
    monthlyRent: MonthlyMoney = Field(description="Gross monthly rent in dollars (0 for a vacant bridge property).")
    productType: ProductType | None = Field(None, description="Loan product (hard_money, fix_flip: interest-only).")
    interestOnly: bool | None = Field(None, description="Interest-only payments; default by product.")
    propertyTaxRate: float = Field(
        DEFAULTS["propertyTaxRate"], ge=0, le=10, description="Property tax, % of price per year."
    )
    insurance: MonthlyMoney = Field(DEFAULTS["insurance"], description="Insurance in dollars per month.")
    hoaDues: MonthlyMoney = Field(0, description="HOA / association dues in dollars per month.")
    vacancyRate: float = Field(DEFAULTS["vacancyRate"], ge=0, lt=100, description="Vacancy, % of rent.")
    operatingExpensePercent: float = Field(
        DEFAULTS["operatingExpensePercent"], ge=0, le=80, description="Repairs, management etc., percent of rent."
    )
    pointsPercent: Percent = Field(0, description="Lender points, percent of the loan, paid at closing.")
    closingCosts: Money = Field(0, description="Other closing costs in dollars, paid at closing.")


def monthly_payment(loan: float, annual_rate_pct: float, years: float) -> float:
    """Principal and interest per month: L*r / (1 - (1+r)^-n), r = rate/1200, n = 12*years."""
    if loan <= 0:
        return 0.0
    n = max(1, round(12 * years))  # bounds keep years >= 1/12; never divide by zero anyway
    r = annual_rate_pct / 1200.0
    if r == 0:
        return loan / n
    return loan * r / (1.0 - (1.0 + r) ** -n)


def interest_only_payment(loan: float, annual_rate_pct: float) -> float:
    """Interest-only payment per month: L x rate / 1200 (the principal is due at the end)."""
    return max(loan, 0.0) * annual_rate_pct / 1200.0


def _pct(value: float, name: str, assumptions: list[str]) -> float:
    if 0 < value < 1:
        assumptions.append(f"{name} {value} read as {value * 100:g} %")
        return value * 100
    return value


def _defaults_used(a: AnalyzeDealArgs, assumptions: list[str]) -> None:
    given = a.model_fields_set
    said = {
        "propertyTaxRate": f"property tax {a.propertyTaxRate:g} % of price a year",
        "insurance": f"insurance ${a.insurance:,.0f} a month",
        "vacancyRate": f"vacancy {a.vacancyRate:g} % of rent",
        "operatingExpensePercent": f"repairs, management and other operating costs {a.operatingExpensePercent:g} %"
        " of rent",
    }
    assumptions += [f"assumed {text} (not given)" for name, text in said.items() if name not in given]
    if "hoaDues" not in given:
        assumptions.append("no HOA dues (not given)")


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
    _defaults_used(a, assumptions)
    io = a.interestOnly if a.interestOnly is not None else a.productType in INTEREST_ONLY_PRODUCTS
    price, rent = a.purchasePrice, a.monthlyRent
    loan = price * (1 - down_pct / 100)
    down = price - loan
    if io:
        pi = interest_only_payment(loan, rate)
        how = "given" if a.interestOnly is not None else f"the norm for {a.productType}"
        assumptions.append(f"interest-only payments ({how}); the full ${loan:,.0f} is due at the end of the term")
    else:
        pi = monthly_payment(loan, rate, a.loanTermYears)
        assumptions.append(f"payments amortise over {max(1, round(12 * a.loanTermYears))} months")
    taxes = price * a.propertyTaxRate / 1200
    pitia = pi + taxes + a.insurance + a.hoaDues
    effective_rent = rent * (1 - vacancy / 100)
    operating = rent * a.operatingExpensePercent / 100
    cash_flow = effective_rent - pitia - operating
    noi = 12 * (effective_rent - taxes - a.insurance - a.hoaDues - operating)
    points = loan * a.pointsPercent / 100
    invested = down + points + a.closingCosts
    dscr = rent / pitia if loan > 0 and pitia > 0 else None
    coc = 100 * 12 * cash_flow / invested if invested > 0 else None
    result: dict[str, Any] = {
        "loanAmount": round(loan, 2),
        "downPayment": round(down, 2),
        "interestOnly": io,
        "monthlyPrincipalAndInterest": round(pi, 2),
        "monthlyTaxes": round(taxes, 2),
        "monthlyInsurance": round(a.insurance, 2),
        "monthlyHOA": round(a.hoaDues, 2),
        "monthlyPITIA": round(pitia, 2),
        "monthlyOperatingExpenses": round(operating, 2),
        "dscr": round(dscr, 4) if dscr is not None else None,
        "monthlyCashFlow": round(cash_flow, 2),
        "pointsCost": round(points, 2),
        "closingCosts": round(a.closingCosts, 2),
        "cashInvested": round(invested, 2),
        "cashOnCashReturnPercent": round(coc, 2) if coc is not None else None,
        "annualNOI": round(noi, 2),
        "capRatePercent": round(100 * noi / price, 2),
        "breakEvenRatio": round((pitia + operating) / effective_rent, 4) if effective_rent > 0 else None,
        "meetsOnePercentRule": rent >= 0.01 * price,
        "assumptions": assumptions,
        "disclaimer": "Estimates only, not a quote or a commitment to lend.",
    }
    result["summary"] = _summary(price, down_pct, rate, rent, pitia, dscr, cash_flow, io)
    return result


def _summary(
    price: float, down_pct: float, rate: float, rent: float, pitia: float, dscr: float | None, cash_flow: float,
    io: bool,
) -> str:  # fmt: skip
    flow = f"{'positive' if cash_flow >= 0 else 'negative'} cash flow of about ${abs(cash_flow):,.0f} a month"
    kind = "interest-only payment" if io else "payment"
    head = (
        f"For a ${price:,.0f} purchase with {down_pct:g}% down at {rate:g}%, the estimated {kind} "
        f"with taxes and insurance is about ${pitia:,.0f} a month"
    )
    if dscr is None:
        return f"With no loan there is no debt payment; ${rent:,.0f} rent gives an estimated {flow}."
    return f"{head}; ${rent:,.0f} rent gives a DSCR of about {dscr:.2f} and an estimated {flow} after operating costs."


def analyze_deal(args: AnalyzeDealArgs, ctx: ToolContext) -> dict[str, Any]:
    """The tool: analyze, and keep the result as this visitor's latest analysis."""
    result = analyze(args)
    ctx.latest_analysis = {"inputs": args.model_dump(), **result}
    return result


TOOL = Tool(
    name="analyzeDeal",
    description=(
        "Estimate a rental or bridge deal: monthly payment (PITIA, with HOA dues), DSCR, cash flow after "
        "operating costs, cash-on-cash return (points and closing costs count as cash invested), NOI, cap rate. "
        "Hard money and bridge loans are interest-only by default. Percentages as numbers (7.5 = 7.5 %). "
        "Say results as estimates and mention the assumptions."
    ),
    args=AnalyzeDealArgs,
    func=analyze_deal,
)
