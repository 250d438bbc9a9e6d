"""The six tools as the model sees them: the contract, and no input that can crash or hang them."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from kiosk.leads.store import Store
from kiosk.tools import catalog
from kiosk.tools.registry import Tool, ToolContext, ToolRegistry
from tests.toolkit import DEAL, DRAFT, call, checkout_settings, make_ctx, make_registry

NAMES = ["searchKnowledgeBase", "analyzeDeal", "analyzeFlip", "saveLead", "scoreLead", "scheduleCall",
         "withdrawConsent", "perplexitySearch"]
# What a successful output of each tool always carries.
RESULT_KEY = {
    "searchKnowledgeBase": "results",
    "analyzeDeal": "summary",
    "analyzeFlip": "summary",
    "saveLead": "leadId",
    "scoreLead": "nextStep",
    "scheduleCall": "bookingUrl",
    "withdrawConsent": "withdrawn",
    "perplexitySearch": "answer",
}


def _props(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v.get("type") for k, v in schema["properties"].items()}


def test_the_contract_names_and_shapes() -> None:
    schemas = {s["name"]: s for s in make_registry().schemas()}
    assert list(schemas) == NAMES
    p = {n: s["parameters"] for n, s in schemas.items()}
    assert p["searchKnowledgeBase"]["required"] == ["query"]
    assert _props(p["searchKnowledgeBase"]) == {"query": "string", "topK": "number"}
    assert p["searchKnowledgeBase"]["properties"]["topK"]["default"] == 3
    assert p["analyzeDeal"]["required"] == [
        "purchasePrice", "downPaymentPercent", "interestRate", "loanTermYears", "monthlyRent"
    ]
    assert set(_props(p["analyzeDeal"]).values()) == {"number", "string", "boolean"}
    assert {k: p["analyzeDeal"]["properties"][k]["default"] for k in ("propertyTaxRate", "insurance", "vacancyRate")} \
        == {"propertyTaxRate": 1.2, "insurance": 150, "vacancyRate": 5}
    draft = p["saveLead"]["properties"]["leadDraft"]
    assert p["saveLead"]["required"] == ["leadDraft"]
    assert draft["required"] == ["name", "email", "phone", "productType", "consentGiven"]
    assert draft["properties"]["productType"]["enum"] == ["dscr", "hard_money", "fix_flip", "portfolio"]
    assert draft["properties"]["consentGiven"]["type"] == "boolean"
    for name, field in (("scoreLead", "leadId"), ("scheduleCall", "leadId"), ("perplexitySearch", "query")):
        assert p[name]["required"] == [field]
        assert _props(p[name]) == {field: "string"}
    # No pydantic artefacts the model would have to wade through.
    text = json.dumps(schemas)
    assert "$ref" not in text and '"title"' not in text and '"null"' not in text


def test_the_daemon_registry_has_all_six_tools(tmp_path: Path) -> None:
    configured = checkout_settings({"store": {"path": str(tmp_path / "kiosk.db")}})
    assert [s["name"] for s in catalog.build_registry(configured).schemas()] == NAMES


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=12,
    )


def _arguments() -> st.SearchStrategy[str]:
    """Anything a model might send: garbage text, any JSON, the right keys with wrong values, near-valid calls."""
    fields = [*DEAL, "query", "topK", "leadId", "leadDraft", "propertyTaxRate", "insurance", "vacancyRate"]
    shaped = st.dictionaries(st.sampled_from(fields), _json_values(), max_size=8)
    draft = st.fixed_dictionaries({k: st.just(v) | _json_values() for k, v in DRAFT.items()})
    near = st.fixed_dictionaries({k: st.just(v) | _json_values() for k, v in DEAL.items()}) | st.builds(
        lambda d: {"leadDraft": d}, draft
    )
    as_json = (_json_values() | shaped | near).map(json.dumps)
    return st.text(max_size=60) | as_json | st.sampled_from(["", "{", "[]", "null", '{"query": "a" ', "[" * 5000])


def test_no_input_crashes_or_escapes_any_tool(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    registry = make_registry(key="test-key")  # web search "configured" against a closed loopback port
    ctx = make_ctx(store)
    seen_error: set[str] = set()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(name=st.sampled_from([*NAMES, "noSuchTool"]), arguments=_arguments())
    def check(name: str, arguments: str) -> None:
        out = json.loads(asyncio.run(registry.call(name, arguments, ctx)))
        assert isinstance(out, dict)
        if "error" in out:
            assert isinstance(out["error"], str) and out["error"]
            assert isinstance(out["fix"], str) and out["fix"]
            seen_error.add(name)
        else:
            assert RESULT_KEY[name] in out

    check()
    assert seen_error >= set(NAMES)  # every tool was reached and refused something


def test_valid_calls_of_every_tool_give_results(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    registry = make_registry(key="test-key")
    ctx = make_ctx(store)
    assert call(registry, "searchKnowledgeBase", {"query": "hard money terms"}, ctx)["results"]
    assert call(registry, "analyzeDeal", DEAL, ctx)["dscr"] is not None
    saved = call(registry, "saveLead", {"leadDraft": DRAFT}, ctx)
    lead_id = saved["leadId"]
    assert call(registry, "scoreLead", {"leadId": lead_id}, ctx)["nextStep"] == saved["followUp"]["nextStep"]
    assert call(registry, "scheduleCall", {"leadId": lead_id}, ctx)["emailQueued"] is True
    out = call(registry, "perplexitySearch", {"query": "median rent in Austin"}, ctx)
    assert out["error"] == "web search is unavailable right now"


class _NoArgs(BaseModel):
    pass


async def test_a_hanging_tool_times_out_with_an_error_output(tmp_path: Path) -> None:
    release = threading.Event()

    def hang(args: _NoArgs, ctx: ToolContext) -> dict[str, Any]:
        release.wait(30)
        return {}

    registry = ToolRegistry([Tool(name="hang", description="hangs", args=_NoArgs, func=hang)], timeout_s=0.05)
    try:
        out = json.loads(await registry.call("hang", "{}", make_ctx(Store(tmp_path / "k.db"))))
    finally:
        release.set()  # let the worker thread finish before the loop shuts its executor down
    assert out["error"] == "hang took too long"


def test_a_crashing_tool_and_a_non_json_result_become_error_outputs(tmp_path: Path) -> None:
    def boom(args: _NoArgs, ctx: ToolContext) -> dict[str, Any]:
        raise RuntimeError("bug")

    def nan(args: _NoArgs, ctx: ToolContext) -> dict[str, Any]:
        return {"x": float("nan")}

    registry = ToolRegistry([Tool("boom", "", _NoArgs, boom), Tool("nan", "", _NoArgs, nan)])
    ctx = make_ctx(Store(tmp_path / "k.db"))
    assert call(registry, "boom", {}, ctx)["error"] == "boom failed unexpectedly"
    assert call(registry, "nan", {}, ctx)["error"] == "nan failed unexpectedly"
