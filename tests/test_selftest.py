"""``kiosk selftest`` against the demo set-up, and clear failures when a part is missing.

The demo set-up (also documented in the README): the Realtime simulator on loopback,
virtual ALSA devices from an ``ALSA_CONFIG_PATH`` file (the microphone reads a WAV-like
raw file, the speaker writes one), gpiozero's mock pin factory, a loopback HTTP server as
the CRM endpoint, and the database and status file in a temp directory.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import struct
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from kiosk.cli.probes import Options, check_database, check_panel, check_realtime, check_sync
from kiosk.cli.selftest import exit_code, render
from kiosk.config import load_settings
from kiosk.sim.scenario import load_scenario
from kiosk.sim.server import Faults, SimOptions, SimServer
from tests.alsa import virtual_card

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "kiosk.toml"
TOKEN = "crm-token"
RUN_LIMIT_S = 90.0


class Crm(BaseHTTPRequestHandler):
    """A CRM endpoint that takes POSTed batches only: GET gets 405, a wrong token 401."""

    def do_GET(self) -> None:
        code = 405 if self.headers.get("Authorization") == f"Bearer {TOKEN}" else 401
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def crm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Crm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/leads"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(SimOptions(scenario=load_scenario("default"))) as server:
        yield server


@dataclass
class Demo:
    """Paths and environment of one demo set-up."""

    root: Path
    env: dict[str, str]

    @property
    def speaker_out(self) -> Path:
        return self.root / "speaker.raw"


def write_alsa(root: Path, mic: Path) -> Path:
    conf = root / "asound.conf"
    conf.write_text(
        'pcm.!default { type asym; playback.pcm "kiosk_out"; capture.pcm "kiosk_in" }\n'
        f"pcm.kiosk_out {{ type file; slave.pcm {{ type null }}; "
        f'file "{root}/speaker.raw"; format "raw"; perm 0644 }}\n'
        f"pcm.kiosk_in {{ type file; slave.pcm {{ type null }}; "
        f'file "/dev/null"; infile "{mic}"; format "raw" }}\n'
    )
    return conf


def tone_file(path: Path, seconds: float = 4.0, amplitude: int = 6000) -> None:
    # 24 kHz (the rate the microphone adapter opens a device that takes any rate at).
    n = int(24000 * seconds)
    wave = (int(amplitude * math.sin(2 * math.pi * 300 * i / 24000)) for i in range(n))
    path.write_bytes(b"".join(struct.pack("<h", v) for v in wave))


@pytest.fixture
def demo(tmp_path: Path, sim: SimServer, crm: str) -> Demo:
    mic = tmp_path / "mic.raw"
    tone_file(mic)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")},
        "ALSA_CONFIG_PATH": str(write_alsa(tmp_path, mic)),
        # Devices by name, as on the Pi (hardware/alsa/asound.conf.example names them the same).
        "KIOSK_AUDIO__INPUT_DEVICE": "kiosk_in",
        "KIOSK_AUDIO__OUTPUT_DEVICE": "kiosk_out",
        "GPIOZERO_PIN_FACTORY": "mock",
        "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin",
        "KIOSK_REALTIME__URL": sim.url,
        "KIOSK_SECRETS__OPENAI_API_KEY": "demo-key",
        "KIOSK_SYNC__ENDPOINT": crm,
        "KIOSK_SECRETS__SYNC_TOKEN": TOKEN,
        "KIOSK_STORE__PATH": str(tmp_path / "state" / "kiosk.db"),
        "KIOSK_SERVICE__STATUS_FILE": str(tmp_path / "state" / "status.json"),
    }
    return Demo(tmp_path, env)


async def selftest(demo: Demo, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kiosk",
        "--config",
        str(CONFIG),
        "selftest",
        "--light-seconds",
        "0",
        *args,
        env=demo.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), RUN_LIMIT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def rows(table: str) -> dict[str, tuple[str, str]]:
    """{check: (result, detail)} from the printed table."""
    out = {}
    for line in table.splitlines()[1:-1]:
        name, result, detail = line.split(None, 2)
        out[name] = (result, detail)
    return out


async def test_selftest_passes_on_the_demo_setup(demo: Demo, sim: SimServer) -> None:
    # The demo's speaker is a file nobody hears: the echo path is skipped there.
    code, out, err = await selftest(demo, "--skip-button", "--skip-echo")
    table = rows(out)
    assert code == 0, out + err
    names = ["config", "database", "microphone", "speaker", "echo", "lights", "button", "realtime", "sync"]
    assert list(table) == names
    assert {name: r for name, (r, _) in table.items()} == {
        **dict.fromkeys(table, "PASS"),
        "echo": "SKIP",
        "button": "SKIP",
    }
    assert "rms -" in table["microphone"][1]
    assert "authenticated, session.update confirmed" in table["realtime"][1]
    assert "HTTP 405" in table["sync"][1]
    # The simulator really saw the round trip, with the configured key.
    assert [e["type"] for e in sim.sessions[0].received] == ["session.update"]
    assert sim.auth_headers == ["Bearer demo-key"]
    # The tone reached the (virtual) speaker: mostly not silence.
    played = demo.speaker_out.read_bytes()
    samples = struct.unpack(f"<{len(played) // 2}h", played[: len(played) // 2 * 2])
    assert sum(1 for s in samples if abs(s) > 1000) > 24000 * 0.3
    assert (demo.root / "state" / "kiosk.db").exists()


async def test_selftest_fails_clearly_without_a_microphone(demo: Demo) -> None:
    write_alsa(demo.root, demo.root / "no-such-mic.raw")  # the capture device cannot exist
    code, out, _ = await selftest(demo, "--skip-button", "--json")
    assert code == 1
    import json

    results = {r["name"]: r for r in json.loads(out)}
    assert results["microphone"]["status"] == "FAIL"
    assert "no microphone" in results["microphone"]["detail"]
    assert results["realtime"]["status"] == "PASS"  # the other parts still checked


async def test_selftest_fails_clearly_with_a_silent_microphone(demo: Demo) -> None:
    (demo.root / "mic.raw").write_bytes(bytes(24000 * 2 * 4))
    code, out, _ = await selftest(demo, "--skip-button", "--no-gpio", "--skip-echo")
    assert code == 1
    result, detail = rows(out)["microphone"]
    assert result == "FAIL" and "below -70 dBFS" in detail
    assert rows(out)["lights"][0] == "SKIP"


async def test_selftest_fails_clearly_when_the_simulator_is_down(demo: Demo, sim: SimServer) -> None:
    await sim.close()
    code, out, _ = await selftest(demo, "--skip-button", "--no-audio")
    assert code == 1
    result, detail = rows(out)["realtime"]
    assert result == "FAIL" and "unreachable" in detail


async def test_selftest_fails_clearly_when_the_database_directory_is_unusable(demo: Demo) -> None:
    blocker = demo.root / "not-a-dir"
    blocker.write_text("x")
    demo.env["KIOSK_STORE__PATH"] = str(blocker / "kiosk.db")
    code, out, _ = await selftest(demo, "--skip-button", "--no-audio")
    assert code == 1
    result, detail = rows(out)["database"]
    assert result == "FAIL" and "cannot open database" in detail


async def test_selftest_reports_the_echo_path_on_a_card_whose_speaker_the_microphone_hears(
    demo: Demo, tmp_path: Path
) -> None:
    # tests/alsa.py's clocked card, its loudspeaker heard 3 dB down by its microphone.
    (tmp_path / "card").mkdir()
    with virtual_card(tmp_path / "card", 24000, 24000, loop_db=-3.0) as card:
        rng = np.random.default_rng(1)
        card.speak(rng.normal(0, 100, 24000 * 20).astype("<i2").tobytes())  # the room's hum, about -50 dBFS
        env = {**demo.env, "ALSA_CONFIG_PATH": str(card.config)}
        env.update(KIOSK_AUDIO__INPUT_DEVICE="vcap", KIOSK_AUDIO__OUTPUT_DEVICE="vplay")
        code, out, err = await selftest(Demo(demo.root, env), "--skip-button", "--no-gpio")
    table = rows(out)
    assert code == 0, out + err
    result, detail = table["echo"]
    assert result == "PASS" and detail.startswith("echo cancellation: "), detail
    assert "echo -3 dB against the played level" in detail


async def test_selftest_exits_78_on_invalid_config(demo: Demo) -> None:
    demo.env["KIOSK_AUDIO__CHUNK_MS"] = "5"
    code, out, _ = await selftest(demo)
    assert code == 78
    assert rows(out)["config"][0] == "FAIL" and "audio.chunk_ms" in out


async def test_realtime_check_reports_a_refused_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KIOSK_STORE__PATH", str(tmp_path / "kiosk.db"))  # the tools' index goes next to it
    async with SimServer(SimOptions(scenario=load_scenario("default"), faults=Faults(reject_key=True))) as server:
        monkeypatch.setenv("KIOSK_REALTIME__URL", server.url)
        monkeypatch.setenv("KIOSK_SECRETS__OPENAI_API_KEY", "revoked")
        result = await check_realtime(load_settings(CONFIG).settings)
    assert result.status == "FAIL" and "invalid_api_key" in result.detail


async def test_realtime_check_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    result = await check_realtime(load_settings(CONFIG).settings)
    assert result.status == "FAIL" and "no API key" in result.detail


async def test_sync_check(monkeypatch: pytest.MonkeyPatch, crm: str) -> None:
    monkeypatch.setenv("KIOSK_SYNC__ENDPOINT", crm)
    monkeypatch.setenv("KIOSK_SECRETS__SYNC_TOKEN", "wrong")
    refused = await check_sync(load_settings(CONFIG).settings)
    assert refused.status == "FAIL" and "token was refused (HTTP 401)" in refused.detail
    monkeypatch.setenv("KIOSK_SYNC__ENDPOINT", "http://127.0.0.1:9/leads")  # discard port: nothing listens
    down = await check_sync(load_settings(CONFIG).settings)
    assert down.status == "FAIL" and "unreachable" in down.detail
    monkeypatch.setenv("KIOSK_SYNC__ENDPOINT", "")
    assert (await check_sync(load_settings(CONFIG).settings)).status == "SKIP"


class PressOnPrompt(io.StringIO):
    """The 'technician': presses the mock button when the self-test asks for it."""

    def __init__(self, factory: MockFactory, pin: int) -> None:
        super().__init__()
        self.factory, self.pin = factory, pin

    def write(self, s: str) -> int:
        if "press the kiosk button" in s:
            p = self.factory.pin(self.pin)
            p.drive_low()
            p.drive_high()
        return super().write(s)


async def test_button_check_sees_a_press(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIOSK_PANEL__BOUNCE_S", "0")  # the mock press is instantaneous
    settings = load_settings(CONFIG).settings
    factory = MockFactory(pin_class=MockPWMPin)
    try:
        results = await check_panel(settings, Options(light_s=0), factory, PressOnPrompt(factory, 17))
    finally:
        factory.reset()
    assert [(r.name, r.status) for r in results] == [("lights", "PASS"), ("button", "PASS")]
    assert "ButtonPressed" in results[1].detail


async def test_button_check_fails_without_a_press() -> None:
    settings = load_settings(CONFIG).settings
    factory = MockFactory(pin_class=MockPWMPin)
    try:
        results = await check_panel(settings, Options(light_s=0, button_s=0.05), factory, io.StringIO())
    finally:
        factory.reset()
    assert results[1].status == "FAIL" and "no press on GPIO17" in results[1].detail
    assert exit_code(results) == 1
    assert "1 failed" in render(results)


def test_database_check_writes_and_reports(tmp_path: Path) -> None:
    first = check_database(tmp_path / "db" / "kiosk.db")
    assert first.status == "PASS" and "created" in first.detail
    again = check_database(tmp_path / "db" / "kiosk.db")
    assert again.status == "PASS" and "created" not in again.detail


@pytest.mark.parametrize(("key", "warned"), [("sk-abc123", True), ("sk-proj-abc123", False)])
async def test_realtime_check_warns_about_a_key_that_opens_the_whole_account(
    key: str, warned: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with SimServer(SimOptions(scenario=load_scenario("default"))) as server:
        monkeypatch.setenv("KIOSK_REALTIME__URL", server.url)
        monkeypatch.setenv("KIOSK_SECRETS__OPENAI_API_KEY", key)
        monkeypatch.setenv("KIOSK_STORE__PATH", str(tmp_path / "kiosk.db"))
        result = await check_realtime(load_settings(CONFIG).settings)
    assert result.status == "PASS"
    assert ("not a project-scoped key" in result.detail) is warned


def test_root_reads_the_installed_credentials_the_service_gets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sudo kiosk selftest` sees the key scripts/install put in /etc/kiosk/credentials."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "openai_api_key").write_text("sk-proj-installed\n")
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(f'[service]\ncredentials_dir = "{creds}"\n')
    assert load_settings(cfg).settings.secrets.openai_api_key is not None
    got = load_settings(cfg).settings.secrets.openai_api_key
    assert got is not None and got.get_secret_value() == "sk-proj-installed"
    systemd = tmp_path / "from-systemd"  # under the unit, systemd's own directory wins
    systemd.mkdir()
    (systemd / "openai_api_key").write_text("sk-proj-service")
    elsewhere = tmp_path / "elsewhere"  # the environment's choice of directory wins over the file's
    elsewhere.mkdir()
    (elsewhere / "openai_api_key").write_text("sk-proj-env")
    monkeypatch.setenv("KIOSK_SERVICE__CREDENTIALS_DIR", str(elsewhere))
    got = load_settings(cfg).settings.secrets.openai_api_key
    assert got is not None and got.get_secret_value() == "sk-proj-env"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(systemd))
    got = load_settings(cfg).settings.secrets.openai_api_key
    assert got is not None and got.get_secret_value() == "sk-proj-service"
