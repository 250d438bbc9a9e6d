"""The echo path check (``kiosk selftest``'s echo row, ``kiosk devices --echo``) on real
PortAudio: tests/alsa.py's clocked virtual card, with its loudspeaker looped into its
microphone (a room) or not (a microphone somewhere else)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kiosk.audio.devices import new_pyaudio
from kiosk.cli.echocheck import check_echo
from kiosk.config import AudioSettings, EchoSettings
from tests.alsa import virtual_card

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parent.parent
DEVICES = AudioSettings(input_device="vcap", output_device="vplay")


async def run_check(tmp_path: Path, loop_db: float | None, mode: str, devices: AudioSettings = DEVICES) -> Any:
    period = devices.input_period_ms or devices.period_ms
    with virtual_card(tmp_path, 24000, 24000, loop_db=loop_db, mic_period_ms=period):
        pa = new_pyaudio()
        try:
            return await check_echo(pa, devices, EchoSettings(mode=mode))
        finally:
            pa.terminate()


async def test_the_canceller_takes_the_burst_out_and_the_delay_is_measured(tmp_path: Path) -> None:
    report = await run_check(tmp_path, -6.0, "aec")
    assert report.heard and report.ok, report
    assert report.reduction_db is not None and report.reduction_db >= 25, report
    # The loop adds 20 ms; PortAudio's and the card's buffers add their share.
    assert report.delay_ms is not None and 20 <= report.delay_ms <= 250, report
    assert report.echo_db is not None and abs(report.echo_db + 6.0) < 1.5, report
    assert report.line().startswith("echo cancellation: ")


async def test_a_microphone_period_of_a_whole_uplink_chunk_lines_up(tmp_path: Path) -> None:
    # One 40 ms device period per chunk (the microphone's thread wakes a quarter as often):
    # PortAudio's ADC times of such periods still put the echo where the speaker's DAC times say.
    report = await run_check(tmp_path, -6.0, "aec", DEVICES.model_copy(update={"input_period_ms": 40}))
    assert report.heard and report.ok, report
    assert report.reduction_db is not None and report.reduction_db >= 25, report
    assert report.delay_ms is not None and 20 <= report.delay_ms <= 250, report


async def test_a_microphone_that_hears_nothing_of_the_speaker_is_named(tmp_path: Path) -> None:
    report = await run_check(tmp_path, None, "aec")
    assert not report.heard and not report.ok
    assert report.line() == "the microphone hears nothing of the speaker (wrong device, or the speaker muted?)"


async def test_without_the_canceller_the_path_is_only_described(tmp_path: Path) -> None:
    report = await run_check(tmp_path, -6.0, "gate")
    assert report.ok and report.reduction_db is None
    assert report.line().startswith("echo path (gate): delay ")


def test_kiosk_devices_echo(tmp_path: Path) -> None:
    with virtual_card(tmp_path, 24000, 24000, loop_db=-6.0) as card:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
        env.update(ALSA_CONFIG_PATH=str(card.config), KIOSK_AUDIO__INPUT_DEVICE="vcap")
        env.update(KIOSK_AUDIO__OUTPUT_DEVICE="vplay")
        done = subprocess.run(
            [sys.executable, "-m", "kiosk", "--config", str(REPO / "config" / "kiosk.toml"), "devices", "--echo"],
            env=env, capture_output=True, text=True, timeout=45, check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("echo path: echo cancellation: "), done.stdout
