"""Every numeric tool argument is bounded: garbage comes back as an error the model can act on.

(Issue 18, point 4.) For each tool, each number in its schema is replaced by values a
confused model or a hostile transcript could produce: a 0.04-year term, a denormal, NaN and
infinity spelt as strings or as JSON overflow, huge numbers. The call must answer with
``{"error", "fix"}`` naming the field (or a finite result), never "failed unexpectedly",
never a crash or a non-finite number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from kiosk.leads.store import Store
from tests.toolkit import DEAL, DRAFT, call, make_ctx, make_registry

REG = make_registry()
FLIP = {"purchasePrice": 200_000, "rehabBudget": 60_000, "afterRepairValue": 350_000, "holdingMonths": 6,
        "interestRate": 11}
VALID: dict[str, dict[str, Any]] = {
    "analyzeDeal": DEAL,
    "analyzeFlip": FLIP,
    "saveLead": {"leadDraft": {**DRAFT, "purchasePrice": 300_000, "afterRepairValue": 400_000, "rehabBudget": 1_000,
                               "propertyCount": 2}},
    "searchKnowledgeBase": {"query": "dscr", "topK": 3},
}
# Raw JSON text spliced in for a number: strings, overflow to infinity, denormals, huge ints.
GARBAGE = ['"NaN"', '"nan"', '"inf"', '"-Infinity"', "1e999", "-1e999", "5e-324", "1e308", "1" + "0" * 400, "-1",
           "0.04", "0"]


def _numbers(args: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for key, value in args.items():
        if isinstance(value, dict):
            found += _numbers(value, (*path, key))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found.append((*path, key))
    return found


def _splice(args: dict[str, Any], path: tuple[str, ...], raw: str) -> str:
    marker = "__GARBAGE__"
    copy = json.loads(json.dumps(args))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = marker
    return json.dumps(copy).replace(f'"{marker}"', raw)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


CASES = [(tool, path, raw) for tool, args in VALID.items() for path in _numbers(args) for raw in GARBAGE]


@pytest.mark.parametrize(("tool", "path", "raw"), CASES, ids=[f"{t}.{'.'.join(p)}={r[:8]}" for t, p, r in CASES])
def test_garbage_numbers_get_an_error_the_model_can_act_on(tmp_path: Path, tool: str, path: tuple[str, ...],
                                                           raw: str) -> None:
    store = Store(tmp_path / "k.db")
    try:
        out = call(REG, tool, _splice(VALID[tool], path, raw), make_ctx(store))
    finally:
        store.close()
    assert "failed unexpectedly" not in out.get("error", ""), out
    assert _finite(out), out
    if "error" in out:
        assert out["fix"]
        assert path[-1] in out["error"] or "not a plausible" in out["error"], out


@pytest.mark.parametrize("years", [0.04, 0.0, 1e-300, -1.0])
def test_a_term_shorter_than_a_month_is_refused(tmp_path: Path, years: float) -> None:
    store = Store(tmp_path / "k.db")
    out = call(REG, "analyzeDeal", {**DEAL, "loanTermYears": years}, make_ctx(store))
    store.close()
    assert "loanTermYears" in out["error"]


def test_a_one_month_term_and_the_largest_allowed_numbers_still_compute(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    ctx = make_ctx(store)
    out = call(REG, "analyzeDeal", {**DEAL, "loanTermYears": 1 / 12}, ctx)
    assert out["monthlyPrincipalAndInterest"] > 300_000
    big = {"purchasePrice": 1e9, "downPaymentPercent": 0, "interestRate": 30, "loanTermYears": 40, "monthlyRent": 1e7}
    assert _finite(call(REG, "analyzeDeal", big, ctx))
    store.close()
