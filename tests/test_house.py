"""The house keeps its architecture: few modules at the top, small modules everywhere, a README
map that says what each room holds and names nothing that is not there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KIOSK = REPO / "kiosk"
MAX_TOP_LEVEL_MODULES = 8
MAX_MODULE_LINES = 400
MAX_MAP_LINES = 15


def _modules() -> list[Path]:
    return sorted(p for p in KIOSK.rglob("*.py") if "__pycache__" not in p.parts)


def _map_block() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Map of the code", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block is not None, "the README's map of the code is a fenced block under '### Map of the code'"
    return block.group(1).splitlines()


def _mapped(lines: list[str]) -> set[str]:
    """Names of kiosk/ entries the map describes: ``kiosk/x/`` rows and ``kiosk/ a.py b.py`` rows."""
    names: set[str] = set()
    for line in lines:
        head = re.split(r"\s{3,}", line.strip(), maxsplit=1)[0].split()
        assert head and head[0].startswith("kiosk/"), f"map line does not start with a kiosk/ path: {line!r}"
        first = head[0].removeprefix("kiosk/").rstrip("/")
        names.update(n for n in [first, *head[1:]] if n)
    return names


def test_kiosk_itself_keeps_a_handful_of_modules() -> None:
    top = sorted(p.name for p in KIOSK.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_module_is_over_400_lines() -> None:
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in _modules()}
    long = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert long == {}, f"split these modules: {long}"


def test_the_readme_map_is_short_and_matches_the_tree() -> None:
    lines = _map_block()
    assert 0 < len(lines) <= MAX_MAP_LINES
    mapped = _mapped(lines)
    present = {p.name for p in KIOSK.iterdir() if p.is_dir() and p.name != "__pycache__"}
    present |= {p.name for p in KIOSK.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    assert present - mapped == set(), f"add these to the README map: {sorted(present - mapped)}"
    assert mapped - present == set(), f"the README map names what is not there: {sorted(mapped - present)}"


def test_only_the_composition_root_builds_kiosks_and_only_the_handshake_opens_connections() -> None:
    """One composition root, one opener: grep the code for the constructors they own."""
    builders, openers = set(), set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            if name == "Kiosk":
                builders.add(str(path.relative_to(KIOSK)))
            if name == "open" and owner == "RealtimeConnection":
                openers.add(str(path.relative_to(KIOSK)))
    assert builders == {"runtime/compose.py"}
    assert openers == {"realtime/handshake.py"}


def test_exit_codes_come_from_os() -> None:
    """No module defines its own EX_* numbers (they were defined five times once)."""
    defined = {
        str(p.relative_to(KIOSK))
        for p in _modules()
        if re.search(r"^\s*EX_[A-Z]+\s*=", p.read_text(), re.M)
    }
    assert defined == set()
