"""The docs stay true: the journald runbook lists exactly the KIOSK_EVENT values the code
emits, and the wiring diagram's GPIO numbers are config/kiosk.toml's defaults."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from kiosk.config import PanelSettings

REPO = Path(__file__).resolve().parent.parent

# event("name", ...), extra={"kiosk": {"event": "name"...}} and fields = {"event": "name"...}
_EMITTED = re.compile(r'(?:\bevent\(\s*"([a-z_]+)"|"event":\s*"([a-z_]+)")')


def emitted_events() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "kiosk").rglob("*.py"):
        if path.name == "logs.py":  # its docstring's examples are not emissions
            continue
        for a, b in _EMITTED.findall(path.read_text()):
            found.add(a or b)
    return found


def runbook_events() -> set[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Runbook: journald") :]
    section = section[: section.index("\n### ", 5)]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return names


def test_runbook_lists_exactly_the_emitted_events() -> None:
    code, docs = emitted_events(), runbook_events()
    assert code - docs == set(), f"add these KIOSK_EVENT values to the README runbook table: {sorted(code - docs)}"
    assert docs - code == set(), f"the runbook lists events nothing emits: {sorted(docs - code)}"


def test_wiring_matches_the_default_pins() -> None:
    wiring = (REPO / "hardware" / "wiring.md").read_text()
    toml = tomllib.loads((REPO / "config" / "kiosk.toml").read_text())["panel"]
    defaults = PanelSettings()
    assert toml["button_pin"] == defaults.button_pin
    assert toml["lamp_pin"] == defaults.lamp_pin
    assert tuple(toml["status_rgb_pins"]) == defaults.status_rgb_pins

    def row(function: str) -> int:
        m = re.search(rf"^\| {re.escape(function)} \| GPIO(\d+) \|", wiring, re.M)
        assert m, function
        return int(m.group(1))

    assert row("Button input") == defaults.button_pin
    assert row("Button lamp (PWM)") == defaults.lamp_pin
    assert (row("Status LED red"), row("Status LED green"), row("Status LED blue")) == defaults.status_rgb_pins
