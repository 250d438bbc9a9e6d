"""``kiosk tools schema|call`` and ``kiosk kb build|search`` against the shipped config and a temp database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiosk.cli.main import main
from kiosk.leads.store import Store
from tests.toolkit import CONFIG, DEAL, DRAFT


@pytest.fixture(autouse=True)
def _temp_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIOSK_STORE__PATH", str(tmp_path / "kiosk.db"))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--config", str(CONFIG / "kiosk.toml"), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_schema_prints_the_tools_array(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "tools", "schema")
    assert code == 0
    assert [t["name"] for t in json.loads(out)] == [
        "searchKnowledgeBase", "analyzeDeal", "analyzeFlip", "saveLead", "scoreLead", "scheduleCall",
        "withdrawConsent", "perplexitySearch"
    ]


def test_call_prints_the_model_output_and_exits_0_even_for_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "tools", "call", "analyzeDeal", "--args", json.dumps(DEAL))
    assert code == 0 and json.loads(out)["dscr"] == pytest.approx(1.2086, abs=1e-4)
    code, out, _ = _run(capsys, "tools", "call", "analyzeDeal", "--args", "{not json")
    assert code == 0 and "not valid JSON" in json.loads(out)["error"]
    code, out, _ = _run(capsys, "tools", "call", "perplexitySearch", "--args", '{"query": "x"}')
    assert code == 0 and json.loads(out)["error"] == "web search is not configured"


def test_an_unknown_tool_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "tools", "call", "deleteEverything")
    assert code == 2 and out == "" and "unknown tool" in err


def test_a_session_can_be_resumed_to_score_its_lead(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    Store(db).close()  # the kiosk's database, as the daemon left it
    draft = json.dumps({"leadDraft": DRAFT})
    _, out, _ = _run(capsys, "tools", "call", "saveLead", "--store", str(db), "--session", "tech-1", "--args", draft)
    lead_id = json.loads(out)["leadId"]
    lead = json.dumps({"leadId": lead_id})
    _, out, _ = _run(capsys, "tools", "call", "scoreLead", "--store", str(db), "--args", lead)
    assert json.loads(out)["error"] == "unknown lead"  # a new session
    _, out, _ = _run(capsys, "tools", "call", "scoreLead", "--store", str(db), "--session", "tech-1", "--args", lead)
    assert json.loads(out)["leadId"] == lead_id


def test_without_store_a_saved_lead_goes_to_a_scratch_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(capsys, "tools", "call", "saveLead", "--args", json.dumps({"leadDraft": DRAFT}))
    assert code == 0 and json.loads(out)["saved"] is True and "scratch store" in err
    assert not (tmp_path / "kiosk.db").exists()  # the kiosk's database was never touched


def test_a_mistyped_store_is_an_error_not_a_new_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = _run(capsys, "tools", "call", "analyzeDeal", "--store", str(tmp_path / "kisok.db"))
    assert code == 69 and "no database at" in err
    assert not (tmp_path / "kisok.db").exists()
    code, _, err = _run(capsys, "leads", "list")
    assert code == 69 and "no database at" in err and not (tmp_path / "kiosk.db").exists()


def test_kb_build_and_search(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "kb", "build")
    assert code == 0 and "chunks from 7 files" in out
    assert (tmp_path / "knowledge-index.sqlite").is_file()
    code, out, _ = _run(capsys, "kb", "search", "What documents do I need for a DSCR loan?")
    assert code == 0
    assert out.splitlines()[0].startswith("1. Documents needed for a DSCR loan — DSCR rental loans (dscr-loans.md)")
    code, out, _ = _run(capsys, "kb", "search", '"NEAR(* -dscr', "--json", "--top-k", "1")
    assert code == 0 and len(json.loads(out)) == 1


def test_config_check_validates_the_lending_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run(capsys, "config", "check")[0] == 0
    monkeypatch.setenv("KIOSK_TOOLS__LENDING_FILE", str(tmp_path / "nope.toml"))
    code, _, err = _run(capsys, "config", "check")
    assert code == 78 and "nope.toml" in err
    assert _run(capsys, "tools", "schema")[0] == 78


@pytest.mark.parametrize(
    "argv",
    [["demo", "--speed", "0"], ["demo", "--speed", "-1"], ["demo", "--speed", "nan"],
     ["kb", "search", "x", "--top-k", "0"], ["leads", "list", "--limit", "-5"], ["sim", "serve", "--port", "70000"],
     ["selftest", "--mic-seconds", "0"]],
)  # fmt: skip
def test_numeric_options_are_checked_where_they_are_parsed(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(argv)
    assert usage.value.code == 2 and "must be" in capsys.readouterr().err
