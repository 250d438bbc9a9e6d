"""What the kiosk must say and who it says it for (issue 17): placeholder lenders refused by
`config check`, the AI disclosure at the start of every visit."""

from __future__ import annotations

import pytest

from kiosk.config.checks import check_settings
from kiosk.tools.consent import greeting
from tests.toolkit import checkout_settings


@pytest.mark.parametrize("name", ["Your Company LLC", "<lender name>", "{lender}", "TODO", "Acme Lending", "Lender",
                                  "Lender Name Inc", "XXXX Capital"])
def test_config_check_refuses_a_placeholder_lender_name(name: str) -> None:
    found = check_settings(checkout_settings({"branch": {"lender_name": name}}))
    assert any(e.startswith("branch.lender_name") and "placeholder" in e for e in found.errors), found.errors


@pytest.mark.parametrize("name", ["Harbor Capital LLC", "First Bartlett Lending, Inc."])
def test_real_lender_names_pass(name: str) -> None:
    found = check_settings(checkout_settings({"branch": {"lender_name": name}}))
    assert not any(e.startswith("branch.lender_name") for e in found.errors)


def test_every_greeting_starts_with_the_configured_ai_disclosure() -> None:
    s = checkout_settings({"branch": {"lender_name": "Harbor Capital LLC"},
                           "session": {"ai_disclosure": "You are speaking with an AI system of {lender_name}."}})
    text = greeting(s)
    assert "You are speaking with an AI system of Harbor Capital LLC." in text
    assert text.index("AI system") < text.index("ask how you can help")
    default = greeting(checkout_settings({"branch": {"lender_name": "Harbor Capital LLC"}}))
    assert "automated AI assistant for Harbor Capital LLC" in default
