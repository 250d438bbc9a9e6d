"""The echo path check (``kiosk selftest``, ``kiosk devices --echo``): a burst on the speaker.

The configured speaker plays a short burst of speech-shaped noise while the configured
microphone listens through the configured echo path (the canceller for ``aec``). Both
sides are recorded as the echo stage sees them: what the speaker's callback handed to the
device with its DAC times, what the microphone delivered with its ADC times. Then:

* does the microphone hear the speaker at all (the burst found in what it captured, by
  correlation)? If not: wrong device, or the speaker is muted;
* the echo path's delay: from the DAC to the ADC, by the devices' own timestamps;
* the echo's level at the microphone against what was played;
* for ``aec``: the canceller's echo reduction over the second half of the burst (it has
  converged by then), e.g. "echo cancellation: 31 dB, delay 42 ms".
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kiosk.audio.aec import EchoStage
from kiosk.audio.resample import Resampler
from kiosk.audio.timeline import Timeline
from kiosk.config import AudioSettings, EchoSettings

RATE = 16000  # of the analysis
BURST_S = 3.0
QUIET_S = 0.5
MAX_DELAY_S = 0.4
HEARD = 0.1  # correlation (0..1) between played and captured above which the speaker is heard
MIN_REDUCTION_DB = 10.0  # aec: less than this after the burst is a failure

Float = npt.NDArray[np.float64]


def burst(seconds: float = BURST_S, dbfs: float = -20.0, seed: int = 7) -> bytes:
    """Speech-shaped noise at 24 kHz: pink-ish, syllable-rate bursts, 20 ms fades."""
    rate = 24000
    n = int(seconds * rate)
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec *= 1 / np.sqrt(np.maximum(f, 100.0)) * (f < 7000)
    x = np.fft.irfft(spec, n)
    t = np.arange(n) / rate
    x *= 0.35 + 0.65 * np.sin(np.pi * 4.0 * t) ** 2  # syllables
    fade = min(n // 2, rate // 50)
    x[:fade] *= np.linspace(0, 1, fade)
    x[-fade:] *= np.linspace(1, 0, fade)
    x *= 32768 * 10 ** (dbfs / 20) / np.sqrt(np.mean(x * x))
    out: bytes = np.clip(x, -32768, 32767).astype("<i2").tobytes()
    return out


class Probe:
    """An echo remover that records both sides and hands on to the real one (if any)."""

    def __init__(self, stage: EchoStage | None, mic_rate: int) -> None:
        self.stage = stage
        self.rate = stage.rate if stage is not None else mic_rate
        self.played_blocks: list[tuple[bytes, int, float | None]] = []
        self.captured_blocks: list[tuple[bytes, int, float | None]] = []
        self.half_at: float | None = None  # the stage's counters restart at this ADC time

    def played(self, pcm: bytes, rate: int, dac_time: float | None) -> None:
        """Device thread: note the block, hand it on."""
        self.played_blocks.append((pcm, rate, dac_time))
        if self.stage is not None:
            self.stage.played(pcm, rate, dac_time)

    def captured(self, pcm: bytes, rate: int, adc_time: float | None) -> bytes:
        """Loop thread: note the block, run the real echo path on it."""
        self.captured_blocks.append((pcm, rate, adc_time))
        if self.stage is None:
            return pcm
        if self.half_at is not None and adc_time is not None and adc_time >= self.half_at:
            self.stage.reset_counters()
            self.half_at = None
        return self.stage.captured(pcm, rate, adc_time)


@dataclass(frozen=True)
class EchoReport:
    """What the check found."""

    mode: str
    heard: bool
    correlation: float
    delay_ms: float | None = None
    echo_db: float | None = None  # at the microphone, against the played level
    reduction_db: float | None = None  # aec: the canceller's, second half of the burst
    problem: str = ""

    @property
    def ok(self) -> bool:
        """Passed: for aec the speaker must be heard and its echo cancelled."""
        if self.problem:
            return False
        if self.mode != "aec":
            return True
        return self.heard and self.reduction_db is not None and self.reduction_db >= MIN_REDUCTION_DB

    def line(self) -> str:
        """One line for a technician."""
        if self.problem:
            return self.problem
        if not self.heard:
            tail = "" if self.mode == "hardware" else " (wrong device, or the speaker muted?)"
            return f"the microphone hears nothing of the speaker{tail}"
        where = f"delay {self.delay_ms:.0f} ms, echo {self.echo_db:+.0f} dB against the played level"
        if self.mode == "aec":
            assert self.reduction_db is not None
            low = "" if self.reduction_db >= MIN_REDUCTION_DB else " (too little: the right microphone?)"
            return f"echo cancellation: {self.reduction_db:.0f} dB{low}, {where}"
        return f"echo path ({self.mode}): {where}"


def _signal(blocks: list[tuple[bytes, int, float | None]]) -> tuple[Float, Timeline]:
    """The blocks at the analysis rate, with a timeline fitted to their timestamps."""
    timeline = Timeline(RATE)
    resample: Resampler | None = None
    parts, count = [], 0.0
    for pcm, rate, t in blocks:
        if resample is None:
            resample = Resampler(rate, RATE)
        if t is not None:
            timeline.report(count, t)
        count += len(pcm) // 2 * RATE / rate
        parts.append(np.frombuffer(resample(pcm), dtype="<i2"))
    x = np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)
    return x, timeline


def _at(x: Float, timeline: Timeline, times: Float) -> Float:
    idx = np.rint((times - timeline.time(0.0)) / timeline.period).astype(np.int64)
    ok = (idx >= 0) & (idx < len(x))
    out: Float = np.where(ok, x[np.clip(idx, 0, max(0, len(x) - 1))], 0.0)
    return out


def analyse(probe: Probe, mode: str, burst_dac: tuple[float, float]) -> EchoReport:
    """Correlate what was played with what was captured, on the devices' shared clock."""
    ref, ref_tl = _signal(probe.played_blocks)
    mic, mic_tl = _signal(probe.captured_blocks)
    if not (ref_tl.ready and mic_tl.ready):
        return EchoReport(mode, False, 0.0, problem="no audio came back from the devices")
    start, end = burst_dac
    grid = start + np.arange(int((end - start + MAX_DELAY_S) * RATE)) / RATE
    played, heard = _at(ref, ref_tl, grid), _at(mic, mic_tl, grid)
    n = 1 << math.ceil(math.log2(2 * len(grid)))
    corr = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(played, n)), n)[: int(MAX_DELAY_S * RATE)]
    lag = int(np.argmax(np.abs(corr)))
    norm = math.sqrt(float(np.dot(played, played)) * float(np.dot(heard, heard))) or 1.0
    rho = float(abs(corr[lag])) / norm
    if rho < HEARD:
        return EchoReport(mode, False, round(rho, 3))
    n = int((end - start) * RATE)
    echo_db = 10 * math.log10((float(np.mean(heard[lag : lag + n] ** 2)) + 1) / (float(np.mean(played[:n] ** 2)) + 1))
    reduction = probe.stage.erle_since_db if probe.stage is not None else None
    return EchoReport(mode, True, round(rho, 3), lag * 1000 / RATE, round(echo_db, 1), reduction)


async def check_echo(pa: Any, a: AudioSettings, e: EchoSettings, *, seconds: float = BURST_S) -> EchoReport:
    """Play the burst on the configured speaker and analyse what the configured microphone heard."""
    from kiosk.audio.echo import echo_stage
    from kiosk.audio.pyaudio_io import PyAudioMicrophone, PyAudioSpeaker, find_device
    from kiosk.errors import DeviceError

    loop = asyncio.get_running_loop()
    started, finished = asyncio.Event(), asyncio.Event()

    def on_playing(playing: bool) -> None:
        (started if playing else finished).set()

    try:
        mic = PyAudioMicrophone.configured(pa, find_device(pa, a.input_device, a.input_index, True), a)
        speaker = PyAudioSpeaker.configured(pa, find_device(pa, a.output_device, a.output_index, False), a)
    except DeviceError as exc:
        return EchoReport(e.mode, False, 0.0, problem=str(exc))
    probe = Probe(echo_stage(e), mic.rate)
    speaker.tap(probe.played)
    mic.cancel_echo(probe)
    drain: asyncio.Task[None] | None = None
    try:
        await mic.start()
        await speaker.start(on_playing)
        drain = asyncio.create_task(_drain(mic))  # the probe sees every block; keep the queue empty
        await asyncio.sleep(QUIET_S)  # the room's quiet, before the burst
        speaker.write(burst(seconds), "echo-check")
        speaker.end_of_stream()
        async with asyncio.timeout(seconds + 5.0):
            await started.wait()
            t0 = loop.time()
            probe.half_at = time.monotonic() + seconds / 2  # the adapters' timestamps are monotonic
            await finished.wait()
        await asyncio.sleep(MAX_DELAY_S + 0.2)  # the echo's tail
    except TimeoutError:
        return EchoReport(e.mode, False, 0.0, problem="the speaker did not play the burst out (device stalled?)")
    except DeviceError as exc:
        return EchoReport(e.mode, False, 0.0, problem=str(exc))
    finally:
        if drain is not None:
            drain.cancel()
        await mic.close()
        await speaker.close()
    start = _burst_start(probe, t0, speaker.latency_ms / 1000)
    return analyse(probe, e.mode, (start, start + seconds))


def _burst_start(probe: Probe, audible_at: float, latency_s: float) -> float:
    """The DAC time of the burst's first sample: the first non-silent block handed over."""
    for pcm, _, t in probe.played_blocks:
        if t is not None and np.any(np.frombuffer(pcm, dtype="<i2")):
            return t
    return audible_at + latency_s


async def _drain(mic: Any) -> None:
    while True:
        await mic.read()
