"""The model is configuration: current defaults, prices per model, deprecation warnings, reasoning
effort where the model has it (issue 14, parts B5 and D)."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from openai.types.realtime import RealtimeSessionCreateRequest
from openai.types.realtime.audio_transcription import AudioTranscription

from kiosk.config import RealtimeSettings, load_settings
from kiosk.config.deprecations import KNOWN, deprecations, model_warnings, openai_root, parse
from kiosk.errors import ConfigError
from kiosk.realtime import session as rs
from tests.test_config import _config_dir, run_cli
from tests.toolkit import CHECKOUT_CONFIG


def _literals(annotation: object) -> set[str]:
    found: set[str] = set()
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Literal:
            found |= set(typing.get_args(arg))
        else:
            found |= _literals(arg)
    return found


def test_the_defaults_are_current_models_on_no_deprecation_list() -> None:
    defaults, shipped = RealtimeSettings(), load_settings(CHECKOUT_CONFIG).settings.realtime
    installed = deprecations(openai_root())
    assert installed.source.startswith("the installed openai package")  # read from the package itself
    for r in (defaults, shipped):
        assert r.model not in installed.shutdown and r.transcription_model not in installed.shutdown
        assert r.model not in KNOWN and r.transcription_model not in KNOWN
        # ...and names the openai package knows (not a typo that would fail at the first press).
        assert r.model in _literals(RealtimeSessionCreateRequest.model_fields["model"].annotation)
        assert r.transcription_model in _literals(AudioTranscription.model_fields["model"].annotation)


def test_the_deprecation_list_is_read_from_the_openai_docstrings() -> None:
    found = deprecations(openai_root()).shutdown
    assert found["gpt-realtime"] == "2027-01-20"
    assert found["gpt-4o-mini-transcribe"] == "2027-02-26"
    assert parse('x\n    Deprecated values:\n    - "a", "b":\n      Announced shutdown date: 2030-01-02. See\n"""') \
        == {"a": "2030-01-02", "b": "2030-01-02"}
    assert deprecations(None).shutdown == KNOWN  # no openai package: the built-in list


def test_config_check_warns_about_a_deprecated_model_and_old_flat_prices(tmp_path: Path) -> None:
    cfg = _config_dir(tmp_path)

    def model_lines(stderr: str) -> list[str]:  # the shipped example values warn too: not these
        return [line for line in stderr.strip().splitlines() if "shipped example" not in line and "555" not in line]

    assert model_lines(run_cli("--config", str(cfg), "config", "check").stderr) == []
    text = re.sub(r'(?m)^model = ".*"$', 'model = "gpt-realtime"', cfg.read_text(), count=1)
    text = re.sub(r'(?m)^transcription_model = ".*"$', 'transcription_model = "gpt-4o-mini-transcribe"', text, count=1)
    cfg.write_text(text.replace("[cost]\n", "[cost]\nprice_audio_in = 32.0\n", 1))
    r = run_cli("--config", str(cfg), "config", "check")
    assert r.returncode == 0, r.stderr  # valid today: a warning, not a failure
    lines = model_lines(r.stderr)
    assert lines[0].startswith("config: warning: realtime.model: 'gpt-realtime' is deprecated, "
                               "announced shutdown 2027-01-20")
    assert lines[1].startswith("config: warning: realtime.transcription_model: 'gpt-4o-mini-transcribe'")
    assert lines[2] == "config: warning: cost.price_audio_in is ignored: prices are per model in [cost.prices]"
    assert model_warnings(RealtimeSettings(), deprecations(openai_root())) == []


def test_prices_from_the_file_add_to_the_built_in_table_and_every_model_needs_one(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text('[realtime]\nmodel = "gpt-realtime-9"\n[cost.prices."gpt-realtime-9"]\naudio_in = 50.0\n')
    prices = load_settings(cfg).settings.cost.prices
    assert prices["gpt-realtime-9"].audio_in == 50.0
    assert prices["gpt-realtime-2.1"].audio_out == 64.0  # the rest of the table stays
    cfg.write_text('[realtime]\nmodel = "gpt-realtime-9"\n')
    with pytest.raises(ConfigError, match=r"cost\.prices has no entry for realtime\.model 'gpt-realtime-9'"):
        load_settings(cfg)


@pytest.mark.parametrize(("model", "effort", "sent"), [
    ("gpt-realtime-2.1", "low", {"effort": "low"}), ("gpt-realtime-2.1-mini", "minimal", {"effort": "minimal"}),
    ("gpt-realtime-1.5", "low", None), ("gpt-realtime-2.1", None, None)])
def test_reasoning_effort_goes_only_to_models_that_reason(model: str, effort: str | None, sent: object) -> None:
    session = rs.SessionConfig(RealtimeSettings(model=model, reasoning_effort=effort), "x").session_object()  # type: ignore[arg-type]
    assert session.get("reasoning") == sent
