"""Real PortAudio on a virtual ALSA card (tests/alsa.py): capture, playback, barge-in, devices."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from kiosk.audio.devices import describe, meter, meter_table, new_pyaudio, wait_for_devices
from kiosk.audio.playback import FADE_MS
from kiosk.audio.pyaudio_io import PyAudioMicrophone, PyAudioSpeaker, find_device
from kiosk.config import AudioSettings
from tests.alsa import VirtualCard, frequency, tone, virtual_card
from tests.toolkit import CHECKOUT_CONFIG

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def card48(tmp_path: Path) -> Iterator[VirtualCard]:
    """A card whose microphone (2 channels) and speaker run at 48 kHz."""
    with virtual_card(tmp_path, 48000, 48000, mic_channels=2) as card:
        yield card


@pytest.fixture
def pa(card48: VirtualCard) -> Iterator[Any]:
    p = new_pyaudio()
    yield p
    p.terminate()


def aligned_error(got: np.ndarray, want: np.ndarray) -> tuple[float, int]:
    """Relative RMS error of ``got`` against ``want`` at the best alignment, and the lag."""
    corr = np.correlate(got.astype(np.float64), want.astype(np.float64), mode="valid")
    lag = int(np.argmax(corr))
    seg = got[lag : lag + len(want)].astype(np.float64)
    return float(np.sqrt(np.mean((seg - want) ** 2)) / np.sqrt(np.mean(want.astype(np.float64) ** 2))), lag


async def wait_until(cond: Any, limit_s: float, what: str) -> None:
    """Poll a condition that PortAudio's or the harness's threads change (no event to await)."""
    try:
        async with asyncio.timeout(limit_s):
            while not cond():  # noqa: ASYNC110 - the state lives in other threads
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {limit_s} s waiting for {what}") from None


def test_devices_are_listed_with_rates(pa: Any) -> None:
    table = describe(pa, AudioSettings(input_device="vcap", output_device="vplay"))
    lines = {line.split()[1]: line for line in table.splitlines()[1:]}
    assert "24000" in lines["vcap"] and "48000" in lines["vcap"]
    assert "<- microphone" in lines["vcap"] and "<- speaker" in lines["vplay"]


async def test_capture_at_48k_is_delivered_as_24k_from_the_chosen_channel(card48: VirtualCard, pa: Any) -> None:
    device = find_device(pa, "vcap", None, True)
    mic = PyAudioMicrophone(pa, device, chunk_ms=20, channel=1, rate=48000, queue_chunks=500)
    assert mic.rate == 48000 and mic.channels == 2
    signal = tone(1000, 1.0, 48000)
    other = tone(300, 1.0, 48000)  # on channel 0, which must not come through
    await mic.start()
    try:
        card48.speak(np.column_stack([other, signal]).astype("<i2").tobytes())
        got = bytearray()
        async with asyncio.timeout(10):
            while len(got) < 24000 * 2 * 1.5:
                got += await mic.read()
    finally:
        await mic.close()
    x = np.frombuffer(bytes(got), dtype="<i2")
    want = soxr.resample(signal, 48000, 24000, quality="QQ")
    err, lag = aligned_error(x, want[200:-200])
    assert err < 0.02, f"captured signal differs from the resampled original by {err:.1%}"
    assert abs(frequency(x[lag : lag + len(want) - 400], 24000) - 1000) < 10
    assert mic.overflows == 0 and mic.callbacks > 0


async def test_24k_playback_through_a_48k_device(card48: VirtualCard, pa: Any) -> None:
    speaker = PyAudioSpeaker(pa, find_device(pa, "vplay", None, False), rate=48000, prebuffer_ms=60)
    assert speaker.rate == 48000
    signal = tone(1000, 1.0, 24000)
    states: list[bool] = []
    await speaker.start(states.append)
    try:
        for i in range(0, len(signal), 2400):  # 100 ms deltas, as they arrive from the API
            speaker.write(signal[i : i + 2400].tobytes(), "item_1")
        speaker.end_of_stream()
        await wait_until(lambda: states == [True, False], 10, "playback to finish")
        await wait_until(lambda: len(card48.output()) > np.flatnonzero(card48.output()).max() + 4800, 5, "drain")
    finally:
        await speaker.close()
    out = card48.output()
    want = soxr.resample(signal, 24000, 48000, quality="QQ")
    err, _ = aligned_error(out, want[400:-400])
    assert err < 0.02, f"played signal differs from the resampled original by {err:.1%}"
    nz = np.flatnonzero(out)
    played = out[nz[0] : nz[-1] + 1]
    assert abs(len(played) - 48000) <= 48, "gapless: exactly one second came out"
    assert abs(frequency(played, 48000) - 1000) < 10
    assert speaker.buffer.underruns == 0


async def test_barge_in_stops_within_a_period_and_reports_what_was_heard(card48: VirtualCard, pa: Any) -> None:
    speaker = PyAudioSpeaker(pa, find_device(pa, "vplay", None, False), rate=48000, period_ms=10)
    signal = tone(440, 3.0, 24000)
    await speaker.start(lambda playing: None)
    try:
        for i in range(0, len(signal), 2400):
            speaker.write(signal[i : i + 2400].tobytes(), "item_1")

        def onset() -> int:
            nz = np.flatnonzero(card48.output())
            return int(nz[0]) if len(nz) else -1

        await wait_until(lambda: onset() >= 0 and len(card48.output()) > onset() + 48000, 10, "1 s of playback")
        left = card48.left_device()
        held_ms = speaker.buffer.played_ms("item_1") - (left - onset()) / 48  # inside the device
        reported = speaker.flush()["item_1"]
        await wait_until(lambda: len(card48.output()) > left + 48000 * 0.3, 5, "300 ms more output")
    finally:
        await speaker.close()
    out = card48.output()
    start, end = onset(), int(np.flatnonzero(out).max())
    # The truth: how much of the item came out of the loudspeaker in the end.
    heard_ms = (end - start) / 48
    assert abs(reported - heard_ms) <= 20, f"reported {reported:.1f} ms, the loudspeaker played {heard_ms:.1f} ms"
    # After the flush the device plays out what it already held (not ours to take back),
    # then at most one period until our next callback, then the fade; never more.
    tail_ms = (end - left) / 48
    assert tail_ms <= held_ms + speaker.period_ms + FADE_MS + 1, f"sound went on {tail_ms:.1f} ms after the flush"
    last_ms = np.abs(out[end - 48 : end + 1].astype(np.int32)).max()
    assert last_ms < 0.2 * 0.3 * 32767, "the cut is faded, not a click"


async def test_a_missing_microphone_is_reported_once_and_found_when_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card = VirtualCard(tmp_path, 24000, 24000)
    card.write_config(with_mic=False)
    card.open()
    import os

    os.environ["ALSA_CONFIG_PATH"] = str(card.config)
    attempts = 0

    def factory() -> Any:
        nonlocal attempts
        attempts += 1
        return new_pyaudio()

    missing: list[str] = []
    stop = asyncio.Event()
    audio = AudioSettings(input_device="vcap", output_device="vplay", device_retry_s=0.1)
    try:
        with caplog.at_level(logging.INFO, logger="kiosk.audio.devices"):
            task = asyncio.create_task(wait_for_devices(audio, stop, on_missing=missing.append, pa_factory=factory))
            await wait_until(lambda: attempts >= 3, 10, "retries")
            assert not task.done()
            card.add_mic()
            async with asyncio.timeout(10):
                found = await task
        assert found is not None and found.mic.name == "vcap"
        found.pa.terminate()
        assert len(missing) == 1 and "vcap" in missing[0] and "vplay" in missing[0]
        events = [getattr(r, "kiosk", {}).get("event") for r in caplog.records]
        assert events.count("device_missing") == 1 and events.count("device_found") == 1
    finally:
        del os.environ["ALSA_CONFIG_PATH"]
        card.close()


def test_the_meter_shows_which_microphone_hears_the_room(card48: VirtualCard, pa: Any) -> None:
    card48.speak(tone(440, 2.0, 48000).repeat(2).tobytes())  # the same tone on both channels
    levels = {lv.name: lv for lv in meter(pa, 1.0)}
    heard = levels["vcap"]
    assert heard.rms_dbfs is not None and heard.rms_dbfs > -20, heard
    # ALSA's "default" reads the same virtual microphone, so either may come out loudest.
    row = next(line for line in meter_table(list(levels.values())).splitlines() if " vcap " in line)
    assert f"{heard.rms_dbfs:.1f}" in row


def test_kiosk_devices_exits_69_when_the_configured_microphone_is_missing(
    card48: VirtualCard, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiosk.cli.main import main

    monkeypatch.setenv("KIOSK_AUDIO__INPUT_DEVICE", "no-such-mic")
    monkeypatch.setenv("KIOSK_AUDIO__OUTPUT_DEVICE", "vplay")
    assert main(["devices", "--config", str(CHECKOUT_CONFIG)]) == 69
    captured = capsys.readouterr()
    assert " vcap " in captured.out and "no-such-mic" in captured.err
    monkeypatch.setenv("KIOSK_AUDIO__INPUT_DEVICE", "vcap")
    assert main(["devices", "--config", str(CHECKOUT_CONFIG)]) == 0
