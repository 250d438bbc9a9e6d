"""Settings: file, environment, credentials, errors a technician can act on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from kiosk.config import SYSTEM_CONFIG, load_settings, masked_dump
from kiosk.errors import ConfigError
from tests.toolkit import CHECKOUT_CONFIG


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, check=False,
                          timeout=60, env=env)


def test_repo_config_is_valid_and_complete() -> None:
    loaded = load_settings(CHECKOUT_CONFIG)
    s = loaded.settings
    assert s.realtime.model == "gpt-realtime-2.1"
    assert s.panel.button_pin == 17
    # Relative paths are resolved against the config file, not the working directory.
    assert s.realtime.instructions_file == CHECKOUT_CONFIG.parent / "instructions.md"
    assert s.tools.knowledge_dir == CHECKOUT_CONFIG.parent / "knowledge"


def test_every_setting_is_documented_in_the_shipped_file() -> None:
    text = CHECKOUT_CONFIG.read_text()
    s = load_settings(CHECKOUT_CONFIG).settings
    for section, model in s:
        if section == "secrets" or not isinstance(model, BaseModel):
            continue
        for field in type(model).model_fields:
            assert field in text, f"[{section}] {field} is missing from config/kiosk.toml"


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIOSK_REALTIME__MODEL", "gpt-realtime-mini")
    monkeypatch.setenv("KIOSK_AUDIO__CHUNK_MS", "20")
    s = load_settings(CHECKOUT_CONFIG).settings
    assert s.realtime.model == "gpt-realtime-mini"
    assert s.audio.chunk_ms == 20
    assert s.realtime.voice == "marin"  # the rest of the section still comes from the file


def test_secrets_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "openai_api_key").write_text("sk-test-123\n")
    (tmp_path / "sync_token").write_text("")  # empty means unset
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    s = load_settings(CHECKOUT_CONFIG).settings
    assert s.secrets.openai_api_key is not None
    assert s.secrets.openai_api_key.get_secret_value() == "sk-test-123"
    assert s.secrets.sync_token is None
    dumped = json.dumps(masked_dump(s))
    assert "sk-test-123" not in dumped
    assert masked_dump(s)["secrets"]["openai_api_key"] == "<set>"


def test_secrets_in_the_file_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text('[secrets]\nopenai_api_key = "sk-oops"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "sk-oops" not in str(err.value)
    assert err.value.problems[0].startswith("secrets:")


def test_every_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text('[audio]\nchunk_ms = 5\nprebuffer_ms = "lots"\n[realtime]\nmodle = "x"\n[echo]\nmode = "loud"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    problems = err.value.problems
    assert len(problems) == 4
    joined = "\n".join(problems)
    assert "audio.chunk_ms: Input should be greater than or equal to 20 (got 5)" in joined
    assert "audio.prebuffer_ms:" in joined
    assert "realtime.modle: unknown setting" in joined
    assert "echo.mode:" in joined


def test_config_check_cli_broken_file_exits_78_without_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text('[audio]\nchunk_ms = 5\n[panel]\nbutton_pin = 99\n')
    r = run_cli("--config", str(cfg), "config", "check")
    assert r.returncode == 78
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("config: audio.chunk_ms:")
    assert lines[1].startswith("config: panel.button_pin:")
    assert "Traceback" not in r.stderr + r.stdout


def test_config_check_cli_not_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text("[audio\nchunk_ms = \n")
    r = run_cli("--config", str(cfg), "config", "check")
    assert r.returncode == 78
    assert "not valid TOML" in r.stderr
    assert "Traceback" not in r.stderr


def test_config_check_cli_missing_file(tmp_path: Path) -> None:
    r = run_cli("--config", str(tmp_path / "nope.toml"), "config", "check")
    assert r.returncode == 78
    assert "cannot read config file" in r.stderr


@pytest.mark.skipif(SYSTEM_CONFIG.exists(), reason="this machine has an installed configuration")
def test_without_config_the_checkout_is_not_used_and_the_error_says_what_to_pass() -> None:
    # Run from the checkout's root: its config/kiosk.toml is right there, and must not be picked up.
    r = subprocess.run([sys.executable, "-m", "kiosk", "config", "check"], capture_output=True, text=True,
                       check=False, timeout=60, cwd=CHECKOUT_CONFIG.parent.parent)
    assert r.returncode == 78, r.stdout + r.stderr
    assert "pass --config PATH" in r.stderr


def test_config_check_and_show_cli_ok(tmp_path: Path) -> None:
    import os

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "openai_api_key").write_text("sk-very-secret")
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}
    r = run_cli("--config", str(CHECKOUT_CONFIG), "config", "check", env=env)
    assert r.returncode == 0, r.stderr
    assert "config OK" in r.stdout
    r = run_cli("--config", str(CHECKOUT_CONFIG), "config", "show", env=env)
    assert r.returncode == 0
    shown = json.loads(r.stdout)
    assert shown["secrets"]["openai_api_key"] == "<set>"
    assert "sk-very-secret" not in r.stdout


OLD_FOLLOWUP = '''
[followup]
postal_address = "Example Lending LLC, 100 Example Street, Example City, ST 00000"
subject = "Your call with {lender_name}"
body = """Hello {name}, book here: {booking_url}"""
'''


def _config_dir(tmp_path: Path) -> Path:
    """A copy of the shipped config/ (its lending.toml and e-mail templates to break)."""
    import shutil

    shutil.copytree(CHECKOUT_CONFIG.parent, tmp_path, dirs_exist_ok=True)
    return tmp_path / "kiosk.toml"


def test_config_check_says_where_the_old_followup_section_went(tmp_path: Path) -> None:
    cfg = _config_dir(tmp_path)
    assert run_cli("--config", str(cfg), "config", "check").returncode == 0
    with (tmp_path / "lending.toml").open("a") as f:  # a lending.toml from before the e-mail moved
        f.write(OLD_FOLLOWUP)
    r = run_cli("--config", str(cfg), "config", "check")
    assert r.returncode == 78
    (line,) = r.stderr.strip().splitlines()
    lending = tmp_path / "lending.toml"
    assert line.startswith(f"config: tools.lending_file: {lending}: [followup] is no longer read here")
    assert "templates/visitor_email.txt" in line and "[notify] postal_address" in line
    assert "Traceback" not in r.stderr


def test_config_check_refuses_a_template_the_kiosk_cannot_fill(tmp_path: Path) -> None:
    cfg = _config_dir(tmp_path)
    visitor = tmp_path / "templates" / "visitor_email.txt"
    visitor.write_text(visitor.read_text().replace("$product_name", "{product_name}").replace("$name", "$nmae"))
    (tmp_path / "templates" / "officer_email.txt").unlink()
    r = run_cli("--config", str(cfg), "config", "check")
    assert r.returncode == 78
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "officer_email.txt cannot be read" in lines[0]
    assert "visitor_email.txt uses unknown placeholder(s) $nmae" in lines[1]
    assert "Traceback" not in r.stderr
