"""The echo stage's parts, pure: smoothed timestamps, the reference's alignment, the residual guard.

The alignment is checked as a contract between the two device sides: a speaker reports
what it plays with DAC times, a microphone whose clock drifts 80 ppm and loses 2 ms of
audio half-way reports its blocks with ADC times, both with jitter; the frames the stage
hands the canceller must pair each microphone frame with the reference that sounded
``lead_ms`` later, to the sample, before and after the jump.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kiosk.audio.aec import AEC_RATE, FRAME, EchoStage, Int16Array, interpolate, interpolate_frames
from kiosk.audio.guard import CouplingMeter, ResidualGuard
from kiosk.audio.timeline import Timeline


def test_a_timeline_filters_jitter_follows_drift_and_takes_a_jump_at_once() -> None:
    rng = np.random.default_rng(3)
    tl = Timeline(16000)
    drift, errors = 80e-6, []
    for block in range(4000):  # 40 s of 10 ms blocks; at 25 s the card loses 2 ms
        k = block * 160
        true = k * (1 + drift) / 16000 + (0.002 if block >= 2500 else 0.0)
        tl.report(k, true + rng.normal(0.0, 0.0003))
        if block > 100 and not 2500 <= block < 2510:
            errors.append(tl.time(k) - true)
    assert tl.jumps == 1
    assert max(abs(e) for e in errors) < 0.0005, "the line stays within half a millisecond"
    assert float(np.sqrt(np.mean(np.square(errors[-1000:])))) < 0.0001, "and within 0.1 ms once settled"
    assert abs(tl.period * 16000 - (1 + drift)) < 10e-6, "the drift is measured to 10 ppm"


def test_interpolating_a_chunk_at_once_equals_interpolating_its_frames_one_by_one() -> None:
    ring = np.random.default_rng(2).normal(0, 3000, 4000).astype(np.float32)
    positions = [1000.25, 1160.31, 1320.37, 1480.43]
    together = interpolate_frames(ring, 100, 3000, positions, FRAME)
    apart = np.concatenate([interpolate(ring, 100, 3000, p, FRAME) for p in positions])
    assert np.allclose(together, apart, atol=0.05)
    edge = interpolate_frames(ring, 0, 1200, [1100.5, 1260.5], FRAME)
    assert np.all(edge[FRAME:] == 0.0), "past what has been played: silence, frame by frame"


def test_interpolation_delays_by_a_fraction_of_a_sample() -> None:
    t = np.arange(4000)
    ring = np.sin(2 * np.pi * 1000 * t / AEC_RATE).astype(np.float32)
    got = interpolate(ring, 0, len(ring), 1000.25, 320)
    want = np.sin(2 * np.pi * 1000 * (np.arange(320) + 1000.25) / AEC_RATE)
    assert np.max(np.abs(got - want)) < 0.01
    assert np.all(interpolate(ring, 0, 2000, 2100.0, 160) == 0.0), "not played yet: silence"


class Recorder:
    """A canceller that keeps what it was given and removes nothing."""

    def __init__(self) -> None:
        self.near: list[Int16Array] = []
        self.far: list[Int16Array] = []
        self.quiet_frames = 0

    def process(self, near: Int16Array, far: Int16Array) -> Int16Array:
        self.near.append(near.copy())
        self.far.append(far.copy())
        return near

    def quiet(self, near: Int16Array) -> Int16Array:
        self.quiet_frames += len(near) // FRAME
        return near

    def reset(self) -> None:
        pass


def _sound(t: np.ndarray) -> np.ndarray:
    """A broadband sound as a function of time (sums of sines: any instant can be sampled)."""
    rng = np.random.default_rng(11)
    out = np.zeros_like(t)
    for f, phase in zip(rng.uniform(150, 6000, 24), rng.uniform(0, 2 * np.pi, 24), strict=True):
        out += np.sin(2 * np.pi * f * t + phase)
    return out * 1500


@pytest.mark.parametrize("per_chunk", [1, 4], ids=["mic-10ms-blocks", "mic-40ms-blocks"])
def test_the_canceller_gets_the_reference_that_sounded_lead_ms_after_each_microphone_frame(per_chunk: int) -> None:
    rate, block, lead_ms, drift = 24000, 240, 5.0, 80e-6
    canceller = Recorder()
    stage = EchoStage(canceller, lead_ms=lead_ms)
    rng = np.random.default_rng(5)
    n_blocks = 2500  # 25 s; the microphone loses 2 ms of audio at 12 s
    for b in range(n_blocks):
        # The speaker is two blocks ahead of the microphone (its output latency).
        j = (b + 2) * block
        played_at = j / rate
        spk = _sound(played_at + np.arange(block) / rate)
        stage.played(spk.astype("<i2").tobytes(), rate, played_at + rng.normal(0, 0.0003))
        if (b + 1) % per_chunk:
            continue  # the microphone hands over a block per chunk (kiosk.audio.capture.Gather)
        i = (b + 1 - per_chunk) * block
        captured_at = i * (1 + drift) / rate + (0.002 if i * (1 + drift) / rate >= 12 else 0.0)
        # This microphone hears the speaker with no delay at all: pure timestamps.
        mic = _sound(captured_at + np.arange(block * per_chunk) * (1 + drift) / rate)
        stage.captured(mic.astype("<i2").tobytes(), rate, captured_at + rng.normal(0, 0.0003))
    near = np.concatenate(canceller.near).astype(np.float64)
    far = np.concatenate(canceller.far).astype(np.float64)
    # The microphone's frame at t is the sound at t; the reference given with it is the
    # sound at t + lead: the microphone lags the reference by exactly the lead.
    want = -round(lead_ms * AEC_RATE / 1000)
    for start_s in (3, 8, 11, 13, 18, 23):  # settling, before the jump, just after, drifting
        s = start_s * AEC_RATE
        a, b_ = near[s : s + AEC_RATE // 2], far[s - 200 : s + AEC_RATE // 2 + 200]
        corr = np.correlate(b_, a, mode="valid")
        lag = int(np.argmax(corr)) - 200
        assert abs(lag - want) <= 2, f"at {start_s} s the microphone lagged by {lag} samples, not {want}"
    assert stage.frames == len(near) // FRAME


def _frames(guard: ResidualGuard, near: np.ndarray, far: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Run the guard over whole 10 ms frames; returns the guarded output."""
    out = out.astype(np.float32).copy()
    for k in range(len(near) // FRAME):
        s = slice(k * FRAME, (k + 1) * FRAME)
        guard.process(near[s].astype(np.float32), far[s].astype(np.float32), out[s])
    return out


def _db(x: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(x.astype(np.float64) ** 2)) + 1e-9)


@pytest.fixture
def converged() -> tuple[ResidualGuard, np.random.Generator]:
    """A guard that has watched the canceller remove 30 dB of echo for 4 s."""
    rng = np.random.default_rng(1)
    guard = ResidualGuard()
    far = rng.normal(0, 3000, 400 * FRAME)
    echo = np.roll(far, 4 * FRAME) * 0.7
    near = echo + rng.normal(0, 10, len(far))
    _frames(guard, near, far, near * 10 ** (-30 / 20))
    assert guard.converged and guard.erle_db > 25
    return guard, rng


def test_a_burst_of_residual_echo_is_held_under_the_echo(converged: tuple[ResidualGuard, np.random.Generator]) -> None:
    guard, rng = converged
    far = rng.normal(0, 3000, 60 * FRAME)
    near = np.roll(far, 4 * FRAME) * 0.7
    residual = near * 10 ** (-30 / 20)
    residual[20 * FRAME : 25 * FRAME] = near[20 * FRAME : 25 * FRAME] * 10 ** (-6 / 20)  # 50 ms leak
    out = _frames(guard, near, far, residual)
    burst = slice(20 * FRAME, 25 * FRAME)
    assert _db(out[burst]) < _db(near[burst]) - 20, "the leak is capped far under the echo"
    assert _db(out[burst]) < _db(residual[burst]) - 12
    assert not guard.open


def test_someone_talking_over_the_echo_opens_the_guard(converged: tuple[ResidualGuard, np.random.Generator]) -> None:
    guard, rng = converged
    far = rng.normal(0, 3000, 100 * FRAME)
    near = np.roll(far, 4 * FRAME) * 0.7
    visitor = rng.normal(0, 600, len(far))  # about -14 dB under the echo, for 600 ms
    visitor[60 * FRAME :] = 0.0
    out = _frames(guard, near + visitor, far, visitor + near * 10 ** (-30 / 20))
    talk = slice(10 * FRAME, 60 * FRAME)  # after the first 100 ms it passes untouched
    assert abs(_db(out[talk]) - _db(visitor[talk])) < 0.5
    assert _db(out[: 6 * FRAME]) < _db(visitor[: 6 * FRAME]) - 3, "its very start is held, for a few frames"
    assert not guard.open, "closed again once they are quiet"


def test_while_learning_the_echo_a_leak_is_held_under_the_microphone_level() -> None:
    rng = np.random.default_rng(2)
    guard = ResidualGuard()
    far = rng.normal(0, 3000, 80 * FRAME)
    near = np.roll(far, 4 * FRAME) * 0.7
    out = near * 10 ** (-30 / 20)  # the canceller at work from the start ...
    out[60 * FRAME : 65 * FRAME] = near[60 * FRAME : 65 * FRAME] * 0.5  # ... but for a 50 ms leak
    got = _frames(guard, near, far, out)
    assert not guard.converged
    leak = slice(60 * FRAME, 65 * FRAME)
    assert _db(got[leak]) < _db(near[leak]) - 20


def test_a_microphone_that_hears_nothing_while_the_assistant_speaks_is_no_echo() -> None:
    rng = np.random.default_rng(6)
    guard = ResidualGuard()
    far = rng.normal(0, 3000, 160 * FRAME)
    silent = np.zeros(len(far))  # the assistant speaks; the microphone hears nothing of it ...
    _frames(guard, silent, far, silent)
    visitor = rng.normal(0, 300, 30 * FRAME)  # ... then a visitor speaks over it
    got = _frames(guard, visitor, far[: len(visitor)], visitor.copy())
    assert np.allclose(got, visitor.astype(np.float32)), "not a frame of them held back"


def test_a_microphone_that_hears_no_echo_is_left_alone() -> None:
    rng = np.random.default_rng(4)
    guard = ResidualGuard()
    far = rng.normal(0, 3000, 300 * FRAME)  # the assistant speaks ...
    visitor = rng.normal(0, 300, len(far))  # ... and the microphone hears only a visitor
    visitor[: 100 * FRAME] = rng.normal(0, 5, 100 * FRAME)  # (after a quiet second)
    got = _frames(guard, visitor, far, visitor.copy())
    # The first words are held until the guard has seen the canceller find nothing to
    # remove (about 0.6 s, once after start-up); from then on it stays out of the way.
    assert np.allclose(got[170 * FRAME :], visitor[170 * FRAME :].astype(np.float32))
    assert guard.erle_db < 6


def test_while_learning_a_visitor_answering_as_the_assistant_stops_is_heard() -> None:
    rng = np.random.default_rng(3)
    guard = ResidualGuard()
    far = rng.normal(0, 3000, 80 * FRAME)  # the first greeting after start-up (0.8 s) ...
    near = np.roll(far, 4 * FRAME) * 0.7
    _frames(guard, near, far, near * 10 ** (-30 / 20))
    assert not guard.converged, "still learning the echo's level"
    quiet = np.zeros(40 * FRAME)  # ... then the visitor answers at once, 50 ms after it ends
    visitor = rng.normal(0, 2000, len(quiet))
    visitor[: 5 * FRAME] = 0.0
    got = _frames(guard, visitor, quiet, visitor.copy())
    answer = slice(20 * FRAME, 40 * FRAME)  # 150 ms after the reference fell silent: untouched
    assert np.allclose(got[answer], visitor[answer].astype(np.float32))


def _blocks(meter: CouplingMeter, near: np.ndarray, far: np.ndarray) -> list[bool]:
    return [meter.add(near[s].astype(np.float32), far[s].astype(np.float32))
            for s in (slice(k * FRAME, (k + 1) * FRAME) for k in range(len(far) // FRAME))]  # fmt: skip


def test_the_coupling_meter_tells_a_microphone_that_hears_the_speaker_from_one_that_does_not() -> None:
    rng = np.random.default_rng(8)
    far = rng.normal(0, 3000, 300 * FRAME)  # 3 s of the assistant
    far[100 * FRAME : 103 * FRAME] = 0.0  # (a pause: the echo's onset lags into the next block)
    echo = np.roll(far, 4 * FRAME) * 10 ** (-35 / 20)  # a quiet coupling, 35 dB down, 40 ms late
    hearing = CouplingMeter()
    assert not any(_blocks(hearing, echo + rng.normal(0, 3, len(far)), far))
    assert hearing.hears
    deaf = CouplingMeter()
    noise = rng.normal(0, 3, len(far))  # the microphone's own noise, about -80 dBFS
    visitor = noise.copy()
    visitor[150 * FRAME : 200 * FRAME] += rng.normal(0, 3000, 50 * FRAME)  # someone talks meanwhile
    changes = _blocks(deaf, visitor, far)
    assert sum(changes) == 1 and not deaf.hears
    assert changes.index(True) < 150, "decided within the assistant's first 1.5 s"
    _blocks(deaf, echo * 10 + noise, far)  # the speaker turned towards the microphone: echo again
    assert deaf.hears


def test_a_visitor_talking_over_a_speaker_the_microphone_does_not_hear_is_not_cancelled() -> None:
    from kiosk.audio.webrtc_aec import WebRtcCanceller

    rate, block = 24000, 240
    stage = EchoStage(WebRtcCanceller())
    rng = np.random.default_rng(9)
    out: list[bytes] = []
    for b in range(600):  # 6 s of the assistant speaking; a visitor joins for the last 2 s
        t = b * block / rate
        spk = _sound(t + 0.02 + np.arange(block) / rate)
        stage.played(spk.astype("<i2").tobytes(), rate, t + 0.02)
        mic = rng.normal(0, 3, block) + (rng.normal(0, 2000, block) if b >= 400 else 0.0)
        out.append(stage.captured(mic.astype("<i2").tobytes(), rate, t))
    assert not stage.coupling.hears
    talk = np.frombuffer(b"".join(out[450:]), dtype=np.int16)
    assert _db(talk) > 10 * math.log10(2000**2) - 3, "the visitor reaches the wire at their level"


def test_a_timeline_reported_once_a_chunk_is_refitted_as_often_as_one_reported_every_period() -> None:
    line = Timeline(AEC_RATE)
    for k in range(104):  # 4.16 s of 40 ms blocks
        line.report(k * 640, k * 0.04)
    before = line.time(108 * 640)
    for k in range(104, 108):  # 0.16 s of blocks 0.6 ms later than the line (not a jump)
        line.report(k * 640, 0.0006 + k * 0.04)
    # Refitted within 0.1 s of reports (by count, every 10 reports, this waited 0.4 s).
    assert line.time(108 * 640) - before > 1e-5


def test_a_speaker_silent_for_a_second_skips_the_canceller_until_it_sounds_again() -> None:
    rate, block = 24000, 240
    canceller = Recorder()
    stage = EchoStage(canceller, quiet_after_s=1.0)
    rng = np.random.default_rng(4)
    out = bytearray()
    for b in range(800):  # 8 s: the assistant speaks, is silent from 3 s to 6 s, speaks again
        t = b * block / rate
        loud = t < 3.0 or t >= 6.0
        spk = _sound(t + 0.02 + np.arange(block) / rate) if loud else np.zeros(block)
        stage.played(spk.astype("<i2").tobytes(), rate, t + 0.02)  # a period ahead of the microphone
        mic = rng.normal(0, 300, block).astype("<i2").tobytes()
        out += stage.captured(mic, rate, t)
    # Quiet from a second after the sound stopped (4 s) until the new sound reached the
    # reference, just before 6 s: about 200 frames; the second after 3 s is still cancelled
    # (the room's echo tail), and so is everything from the new sound on.
    assert 190 <= stage.quiet_frames <= 205, stage.quiet_frames
    assert canceller.quiet_frames == stage.quiet_frames
    assert stage.frames == sum(len(x) for x in canceller.near) // FRAME
    assert stage.frames + stage.quiet_frames == len(out) // 2 // FRAME, "no frame lost or doubled"
    assert 590 <= stage.frames <= 610


def test_the_quiet_path_joins_aec3_without_a_seam() -> None:
    from kiosk.audio.webrtc_aec import LAG, WebRtcCanceller

    x = (np.random.default_rng(1).normal(0, 2000, 3 * AEC_RATE)).astype(np.int16)  # room noise
    chunk = 4 * FRAME

    def run(quiet_from: int, quiet_to: int) -> np.ndarray:
        c, out = WebRtcCanceller(), []
        for i in range(0, len(x), chunk):
            near = x[i : i + chunk]
            quiet = quiet_from <= i < quiet_to
            out.append(c.quiet(near) if quiet else c.process(near, np.zeros(len(near), dtype=np.int16)))
        return np.concatenate(out).astype(np.float64)

    aec3 = run(0, 0)  # the speaker silent, AEC3 throughout: its filtering and its delay
    ref = x[AEC_RATE : 2 * AEC_RATE].astype(np.float64)
    lag = int(np.argmax([np.dot(aec3[AEC_RATE + k : 2 * AEC_RATE + k], ref) for k in range(400)]))
    assert lag == LAG, "AEC3's delay changed: LAG must follow it"
    mixed = run(AEC_RATE, 2 * AEC_RATE)  # the quiet path from 1 s to 2 s

    def mismatch(a: int, b: int) -> float:
        d = mixed[a:b] - aec3[a:b]
        return float(np.sqrt(np.mean(d * d) / np.mean(aec3[a:b] ** 2)))

    assert mismatch(AEC_RATE, AEC_RATE + chunk) < 0.05, "into the quiet path: the same samples, on time"
    assert mismatch(AEC_RATE + chunk, 2 * AEC_RATE) < 0.001, "then AEC3's own high-pass filter, sample for sample"
    # Back to AEC3: it first hands out the 8 ms it held from before the pause, then the same.
    assert mismatch(2 * AEC_RATE + LAG, 2 * AEC_RATE + 4 * chunk) < 0.05


def test_the_interpolation_kernels_are_a_kaiser_windowed_sinc_to_the_bit() -> None:
    # The stage builds them without np.i0 / np.sinc (memory: their first call touches ~1 MB
    # of numpy); they must be exactly what those would give.
    from kiosk.audio import aec

    x = aec._K[None, :] - np.arange(256, dtype=np.float64)[:, None] / 256
    window = np.i0(aec._BETA * np.sqrt(np.clip(1 - (x / (aec.TAPS / 2)) ** 2, 0, 1))) / np.i0(aec._BETA)
    want = (aec._CUTOFF * np.sinc(aec._CUTOFF * x) * window).astype(np.float32)
    assert np.array_equal(aec._KERNELS, want)
