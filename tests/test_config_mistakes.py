"""Every mistake a technician makes that would break a visit or a lead is refused by
``kiosk config check`` with exit 78 and the setting named; the shipped config passes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.cli.main import main
from tests.toolkit import CHECKOUT_CONFIG


def _site(tmp_path: Path, **lines: str) -> Path:
    """A copy of the shipped config/ with ``key = value`` lines replaced (key as in the file)."""
    site = tmp_path / "etc"
    shutil.copytree(CHECKOUT_CONFIG.parent, site)
    cfg = site / "kiosk.toml"
    text = cfg.read_text()
    for key, value in lines.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
        assert n == 1, key
    cfg.write_text(text)
    return cfg


def _check(capsys: pytest.CaptureFixture[str], cfg: Path, *extra: str) -> tuple[int, str]:
    code = main(["config", "check", "--config", str(cfg), *extra])  # --config after the sub-command
    return code, capsys.readouterr().err


def test_the_shipped_config_passes_with_warnings_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _check(capsys, _site(tmp_path))
    assert code == 0
    assert "warning: branch.lender_name is the shipped example" in err


def test_strict_refuses_the_shipped_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _check(capsys, _site(tmp_path), "--strict")
    assert code == 78
    assert "config: branch.lender_name is the shipped example" in err
    assert "config: tools.lending_file: booking link dscr is the shipped example" in err


MISTAKES = {
    "phone region UK": ({"default_phone_region": '"UK"'}, "tools.default_phone_region: not a phone region; use 'GB'"),
    "instructions typo": ({"instructions_file": '"instructons.md"'}, "realtime.instructions_file:"),
    "no lender": ({"lender_name": '""'}, "branch.lender_name: must not be empty"),
    "callback not a number": ({"callback_phone": '"call us"'}, "branch.callback_phone: not a phone number"),
    "knowledge typo": ({"knowledge_dir": '"knowlege"'}, "tools.knowledge_dir:"),
    "no offline message": ({"offline_message": '"audio/gone.wav"'}, "session.offline_message:"),
    "no templates": ({"templates_dir": '"templatez"'}, "notify.templates_dir:"),
    "officer e-mail": ({"officer_email": '"lo at lender"'}, "notify.officer_email: not an e-mail address"),
    "booking URL": ({"booking_url": '"www.lender.com/book"'}, "branch.booking_url: must be an https:// URL"),
    "endpoint without host": ({"endpoint": '"https://"'}, "sync.endpoint: must be an https:// URL with a host"),
    "endpoint port": ({"endpoint": '"https://crm.lender.com:99999/leads"'}, "sync.endpoint: is not a usable URL"),
    "endpoint port text": ({"endpoint": '"https://crm.lender.com:https/leads"'}, "sync.endpoint: is not a usable URL"),
    "endpoint space": ({"endpoint": '"https://crm.lender.com/ leads"'}, "sync.endpoint: must not contain spaces"),
    "endpoint ipv6": ({"endpoint": '"https://[::1/leads"'}, "sync.endpoint: is not a usable URL"),
    "endpoint password": ({"endpoint": '"https://kiosk:pw@crm.lender.com/leads"'}, "sync.endpoint: must not hold"),
    "endpoint plain": ({"endpoint": '"http://crm.lender.com/leads"'}, "sync.endpoint: must be an https:// URL"),
    "realtime plain": ({"url": '"ws://api.openai.com/v1/realtime"'}, "realtime.url: must be a wss:// URL"),
    "realtime port": ({"url": '"wss://api.openai.com:0x1/v1/realtime"'}, "realtime.url: is not a usable URL"),
    "search host": ({"search_base_url": '"https://"'}, "tools.search_base_url: must be an https:// URL"),
    "button on the lamp": ({"button_pin": "18"}, "panel: GPIO18 used twice"),
    "number as text": ({"chunk_ms": '"40"'}, "audio.chunk_ms: must be a whole number (no quotes) (got '40')"),
    "boolean as text": ({"warm_standby": '"yes"'}, "realtime.warm_standby: must be true or false"),
    "misspelt key": (
        {"chunk_ms": "40\nchunk_msec = 40"}, "audio.chunk_msec: unknown setting; did you mean 'chunk_ms'?"
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_mistake_is_refused_with_the_setting_named(
    mistake: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines, expected = MISTAKES[mistake]
    code, err = _check(capsys, _site(tmp_path, **lines))
    assert code == 78, err
    assert expected in err, err


def test_an_unknown_placeholder_in_the_prompt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _site(tmp_path)
    prompt = cfg.parent / "instructions.md"
    prompt.write_text(prompt.read_text() + "\nAlways name {lender_nme}.\n")
    code, err = _check(capsys, cfg)
    assert code == 78 and "realtime.instructions_file" in err and "{lender_nme}" in err


def test_a_bad_booking_link_in_the_lending_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _site(tmp_path)
    lending = cfg.parent / "lending.toml"
    lending.write_text(lending.read_text().replace('dscr = "https://example.com/book/dscr"', 'dscr = "book/dscr"'))
    code, err = _check(capsys, cfg)
    assert code == 78 and "tools.lending_file: booking link dscr: must be an https:// URL" in err


def test_a_misspelt_environment_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIOSK_AUDIO__CHUNKMS", "40")
    code, err = _check(capsys, _site(tmp_path))
    assert code == 78
    assert "environment KIOSK_AUDIO__CHUNKMS: no such setting; did you mean KIOSK_AUDIO__CHUNK_MS?" in err


def test_the_daemon_refuses_what_config_check_refuses(tmp_path: Path) -> None:
    cfg = _site(tmp_path, instructions_file='"instructons.md"')
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    r = subprocess.run([sys.executable, "-m", "kiosk", "run", "--no-gpio", "--config", str(cfg)], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert r.returncode == 78 and "realtime.instructions_file:" in r.stderr and "Traceback" not in r.stderr
