"""analyzeFlip: a fix-and-flip deal as a flip lender and the investor see it (DOMAIN.md).

The loan covers part of the purchase (``purchaseFinancedPercent``) and part of the rehab
(``rehabFinancedPercent``, usually all of it): loan-to-cost and loan-to-ARV count both,
because the rehab loan is debt too. Interest is interest-only on the whole loan for the
whole hold (rehab draws come in stages in practice, so this errs on the safe side, and the
result says so). Profit = ARV - selling costs - everything spent; ROI = profit / the
investor's own cash; annualised = ROI x 12 / months (simple, stated). Every default the
tool fills in is listed in ``assumptions``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kiosk.tools.bounds import Money, MonthlyMoney, Months, Percent, Price, Rate, ToolArgs
from kiosk.tools.registry import Tool, ToolContext

SEVENTY_PCT_RULE = 0.70


class AnalyzeFlipArgs(ToolArgs):
    """Arguments of analyzeFlip (the model's contract)."""

    purchasePrice: Price = Field(description="Purchase price in dollars.")
    rehabBudget: Money = Field(description="Renovation budget in dollars.")
    afterRepairValue: Price = Field(description="Expected value after the renovation (ARV) in dollars.")
    holdingMonths: Months = Field(description="Months from purchase to sale (1-60).")
    interestRate: Rate = Field(description="Annual interest rate in percent (11 = 11 %).")
    pointsPercent: Percent = Field(2.0, description="Lender points, percent of the loan.")
    purchaseFinancedPercent: Percent = Field(90.0, description="Share of the purchase price the loan covers.")
    rehabFinancedPercent: Percent = Field(100.0, description="Share of the rehab budget the loan covers.")
    closingCostsPercent: Percent = Field(2.0, description="Buying closing costs, percent of the purchase price.")
    sellingCostsPercent: Percent = Field(6.0, description="Selling costs (agent, transfer), percent of ARV.")
    monthlyHoldingCosts: MonthlyMoney | None = Field(
        None, description="Taxes, insurance and utilities per month while holding; default 1.2 %/yr tax + $150."
    )


def analyze_flip_numbers(a: AnalyzeFlipArgs) -> dict[str, Any]:
    """Compute the flip; pure."""
    assumptions: list[str] = []
    given = a.model_fields_set
    labels = {
        "pointsPercent": f"points {a.pointsPercent:g} % of the loan",
        "purchaseFinancedPercent": f"the loan covers {a.purchaseFinancedPercent:g} % of the purchase",
        "rehabFinancedPercent": f"the loan covers {a.rehabFinancedPercent:g} % of the rehab",
        "closingCostsPercent": f"buying closing costs {a.closingCostsPercent:g} % of the price",
        "sellingCostsPercent": f"selling costs {a.sellingCostsPercent:g} % of the ARV",
    }
    assumptions += [f"assumed {text} (not given)" for name, text in labels.items() if name not in given]
    price, rehab, arv, months = a.purchasePrice, a.rehabBudget, a.afterRepairValue, a.holdingMonths
    holding = a.monthlyHoldingCosts
    if holding is None:
        holding = price * 1.2 / 1200 + 150
        assumptions.append(f"assumed holding costs ${holding:,.0f} a month (1.2 % tax a year + $150 insurance)")
    assumptions.append("interest-only on the whole loan for every month held (rehab drawn at once: errs high)")
    assumptions.append("annualised return = return x 12 / months held (simple, not compounded)")
    purchase_loan = price * a.purchaseFinancedPercent / 100
    rehab_loan = rehab * a.rehabFinancedPercent / 100
    loan = purchase_loan + rehab_loan
    cost = price + rehab
    points = loan * a.pointsPercent / 100
    closing = price * a.closingCostsPercent / 100
    interest = loan * a.interestRate / 1200 * months
    carrying = holding * months
    selling = arv * a.sellingCostsPercent / 100
    total_cost = cost + points + closing + interest + carrying + selling
    profit = arv - total_cost
    cash = max(total_cost - selling - loan, 0.0)  # what the investor puts in before the sale
    roi = 100 * profit / cash if cash > 0 else None
    return {
        "purchaseLoan": round(purchase_loan, 2),
        "rehabLoan": round(rehab_loan, 2),
        "loanAmount": round(loan, 2),
        "loanToCostPercent": round(100 * loan / cost, 2),
        "loanToArvPercent": round(100 * loan / arv, 2),
        "allInCostToArvPercent": round(100 * cost / arv, 2),
        "monthlyInterest": round(loan * a.interestRate / 1200, 2),
        "totalInterest": round(interest, 2),
        "pointsCost": round(points, 2),
        "closingCosts": round(closing, 2),
        "holdingCosts": round(carrying, 2),
        "sellingCosts": round(selling, 2),
        "cashInvested": round(cash, 2),
        "profit": round(profit, 2),
        "roiPercent": round(roi, 2) if roi is not None else None,
        "annualizedRoiPercent": round(roi * 12 / months, 2) if roi is not None else None,
        "seventyPercentRuleMaxOffer": round(arv * SEVENTY_PCT_RULE - rehab, 2),
        "interestOnly": True,
        "assumptions": assumptions,
        "disclaimer": "Estimates only, not a quote or a commitment to lend.",
        "summary": (
            f"Buying at ${price:,.0f} with ${rehab:,.0f} of rehab and selling at ${arv:,.0f} after {months} months, "
            f"the estimated profit is about ${profit:,.0f} on about ${cash:,.0f} of your own cash; the loan of "
            f"about ${loan:,.0f} is {100 * loan / cost:.0f} percent of cost and {100 * loan / arv:.0f} percent of "
            f"the after-repair value."
        ),
    }


def analyze_flip(args: AnalyzeFlipArgs, ctx: ToolContext) -> dict[str, Any]:
    """The tool: analyze, and keep the result as this visitor's latest analysis."""
    result = analyze_flip_numbers(args)
    ctx.latest_analysis = {"inputs": args.model_dump(), "kind": "flip", **result}
    return result


TOOL = Tool(
    name="analyzeFlip",
    description=(
        "Estimate a fix-and-flip deal: purchase and rehab loan, loan-to-cost and loan-to-ARV, interest-only "
        "interest, points, holding and selling costs, profit, return on cash and annualised return. "
        "Percentages as numbers. Say results as estimates and mention the assumptions."
    ),
    args=AnalyzeFlipArgs,
    func=analyze_flip,
)
