"""Shared set-up for the tool tests: a real store, the shipped config, a registry of six tools.

Tests may read the checkout's config/; the product never does (it has only the settings it is given).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from kiosk.config import BranchSettings, NotifySettings, Settings, load_settings
from kiosk.leads.mail import Composer
from kiosk.leads.store import Store
from kiosk.sim.rig import Rig
from kiosk.sim.scenario import Reply, Scenario, Turn, load_scenario
from kiosk.tools import booking, consent, deals, flips, knowledge, leads, scoring, websearch
from kiosk.tools.lending import LendingConfig, load_lending
from kiosk.tools.registry import ToolContext, ToolRegistry, ToolSite

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
CHECKOUT_CONFIG = CONFIG / "kiosk.toml"
DRAFT: dict[str, Any] = {
    "name": "Jane Doe",
    "email": "Jane.Doe@Example.COM",
    "phone": "(415) 555-0132",
    "productType": "dscr",
    "consentGiven": True,
}
DEAL: dict[str, Any] = {
    "purchasePrice": 400_000,
    "downPaymentPercent": 25,
    "interestRate": 7.5,
    "loanTermYears": 30,
    "monthlyRent": 3200,
}


# What the assistant says in a complete visit (greeting with the AI disclosure, the consent turn for DRAFT's number).
GREETING_SAID = "Hi, you're talking with an automated AI assistant for Example Lending LLC. How can I help?"
CONSENT_SAID = (
    "Example Lending LLC (NMLS 000000) may call or text you at four one five, five five five, zero one three two, "
    "including by automated or AI voice, about your inquiry. Consent is not a condition of any loan, and you can "
    "opt out any time by saying or replying stop. Do you agree?"
)


def checkout_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """The checkout's config/kiosk.toml (and the environment), with ``overrides`` on top."""
    return load_settings(CHECKOUT_CONFIG, overrides=overrides).settings


def lending() -> LendingConfig:
    """The shipped lending.toml."""
    return load_lending(CONFIG / "lending.toml")


def make_ctx(store: Store, visit: str = "s1") -> ToolContext:
    """A visit's tool scope over a real store, with the visitor's "yes" in its transcript."""
    ctx = ToolSite(store=store, kiosk_id="kiosk-test", branch=BranchSettings(), phone_region="US").visit(visit)
    ctx.transcript += [("assistant", GREETING_SAID), ("assistant", CONSENT_SAID), ("visitor", "Yes, I agree.")]
    return ctx


UNSUBSCRIBE = "unsubscribe@lender.example"  # the opt-out mailbox of the test lender


def composer(**notify: Any) -> Composer:
    """The shipped e-mail templates with these [notify] values (no loan-officer address unless given)."""
    values = {"templates_dir": CONFIG / "templates", "unsubscribe_address": UNSUBSCRIBE, **notify}
    return Composer(NotifySettings(**values), BranchSettings())


def make_registry(
    search_url: str = "http://127.0.0.1:9", key: str | None = None, timeout_s: float = 8.0, mail: Composer | None = None
) -> ToolRegistry:
    """All six tools over the shipped knowledge base, lending.toml and templates; web search at ``search_url``."""
    cfg = lending()
    mail = mail if mail is not None else composer()
    client = websearch.PerplexityClient(
        api_key=SecretStr(key) if key else None, base_url=search_url, timeout_s=2.0, max_chars=300
    )
    kb = knowledge.KnowledgeBase.open_or_build(CONFIG / "knowledge")
    tools = [
        knowledge.make_tool(kb),
        deals.TOOL,
        flips.TOOL,
        leads.make_tool(cfg, mail),
        scoring.make_tool(cfg),
        booking.make_tool(cfg, mail),
        consent.TOOL,
        websearch.make_tool(client),
    ]
    return ToolRegistry(tools, timeout_s=timeout_s)


def call(registry: ToolRegistry, name: str, args: dict[str, Any] | str, ctx: ToolContext) -> dict[str, Any]:
    """Run one call as the model would; the decoded JSON output."""
    raw = args if isinstance(args, str) else json.dumps(args)
    out: dict[str, Any] = json.loads(asyncio.run(registry.call(name, raw, ctx)))
    return out


LONG_GREETING = Reply("Welcome! " + "Let me tell you about our investor loan programs in some detail. " * 3)


def barge_rig(tmp_path: Path, *, turns: tuple[Turn, ...] | None = None, **kwargs: Any) -> Rig:
    """A rig whose visitor cuts into a long greeting: echo mode 'hardware' (the rig's room is
    echo-free), a recording speaker; the first turn is answered "Sure, go ahead." unless
    ``turns`` says otherwise. ``kwargs`` go to :class:`Rig` (habits, faults)."""
    happy = load_scenario("happy_path")
    turns = turns or (Turn(happy.turns[0].visitor, reply=Reply("Sure, go ahead.")),)
    scenario = Scenario(name="barge", greeting=LONG_GREETING, turns=turns)
    return Rig(scenario, tmp_path, speed=4, overrides={"echo": {"mode": "hardware"}}, record=True,
               config=CHECKOUT_CONFIG, **kwargs)  # fmt: skip
