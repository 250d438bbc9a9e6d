"""In-process echo cancellation: the microphone minus what the loudspeaker played.

:class:`EchoStage` sits in the microphone's conditioning (``kiosk.audio.capture``), before
the 24 kHz resampling for the wire. Its reference is exactly what the speaker's output
callback handed to the device (silence, fades and flushes included), each block with the
time it reaches the DAC; every microphone block comes with the time it left the ADC. Both
streams are resampled to the canceller's rate (16 kHz) and their timestamps smoothed
(:class:`~kiosk.audio.timeline.Timeline`): for each 10 ms microphone frame the stage reads
the reference that sounded ``lead_ms`` later than the frame was captured, by the two
streams' own clocks, interpolated (windowed sinc) at the position the timelines give. So
clock drift between two devices and jumps in their timelines reach the canceller already
corrected; what is left is the room (delay the devices do not report, reverberation),
which the canceller learns. One stage (and one canceller) lives as long as the devices,
across visits: its filter stays converged.

The canceller is a port (:class:`EchoCanceller`); ``kiosk.audio.webrtc_aec`` is the
adapter for WebRTC's AEC3. After it, :class:`~kiosk.audio.guard.ResidualGuard` keeps what
is left from starting a turn.

Threads: :meth:`EchoStage.played` is called on the speaker's device thread and only
queues; everything else runs on the event loop (the capture conditioning).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Protocol

import numpy as np
import numpy.typing as npt

from kiosk.audio.guard import CouplingMeter, ResidualGuard
from kiosk.audio.resample import Resampler
from kiosk.audio.timeline import Timeline
from kiosk.logs import event

log = logging.getLogger(__name__)

AEC_RATE = 16000  # WebRTC's AEC3 takes 16/32/48 kHz; 16 kHz is the cheapest and carries speech
FRAME = AEC_RATE // 100  # 10 ms
RING = 2 * AEC_RATE  # reference kept: far more than any lead or interpolation needs
TAPS = 16  # windowed-sinc interpolation of the reference
HOLD_FRAMES = 3  # a microphone frame waits at most this long for its reference
SLEW = 0.05  # samples a frame the alignment may move smoothly (about 300 ppm) ...
JUMP = 8  # ... and beyond this many samples (0.5 ms) it moves at once
QUIET_AFTER_S = 1.0  # the reference silent this long before a frame: no echo left to cancel (RT60 ~0.5 s)
QUIET_LEVEL = 4  # reference samples this small are silence (-78 dBFS; the resampler dithers by 1)
_K = np.arange(-TAPS // 2 + 1, TAPS // 2 + 1)
_CUTOFF = 0.9  # of Nyquist: the kernel's pass band (speech above 7 kHz matters little here)
_BETA = 6.0
Int16Array = npt.NDArray[np.int16]
Float = npt.NDArray[np.float32]


class EchoCanceller(Protocol):
    """An acoustic echo canceller working on 10 ms frames at :data:`AEC_RATE`."""

    def process(self, near: Int16Array, far: Int16Array) -> Int16Array:
        """The microphone frames ``near`` with the echo of ``far`` removed (any whole number of frames)."""

    def quiet(self, near: Int16Array) -> Int16Array:
        """The microphone frames ``near`` while the speaker has long been silent: what
        :meth:`process` would return with no echo to remove (the same filtering, the same
        delay), without its cost. The stage switches between the two at will, so their
        outputs must join without a seam."""

    def reset(self) -> None:
        """Forget what it learned (the echo path changed beyond recognition)."""


def _bessel_i0(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The modified Bessel function I0 by its power series (to float64's precision for the
    Kaiser window's arguments, 0..BETA). Not ``np.i0``, nor ``np.sinc`` below: their first
    call touches about 1 MB of numpy the kiosk never uses again (the kernels come out the
    same to the bit)."""
    q = (x / 2) ** 2
    term, total = np.ones_like(x), np.ones_like(x)
    for k in range(1, 40):
        term = term * q / (k * k)
        total = total + term
    return total


def _sinc(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    y = np.pi * np.where(x == 0, 1.0e-20, x)
    out: npt.NDArray[np.float64] = np.sin(y) / y
    return out


def _kernels(phases: int = 256) -> Float:
    """Windowed-sinc fractional-delay kernels for ``phases`` fractions of a sample."""
    frac = np.arange(phases, dtype=np.float64)[:, None] / phases
    x = _K[None, :] - frac
    arg = _BETA * np.sqrt(np.clip(1 - (x / (TAPS / 2)) ** 2, 0, 1))
    window = _bessel_i0(arg) / _bessel_i0(np.full(1, _BETA))
    out: Float = (_CUTOFF * _sinc(_CUTOFF * x) * window).astype(np.float32)
    return out


_KERNELS = _kernels()


def interpolate(ring: Float, start: int, end: int, pos: float, n: int) -> Float:
    """``n`` samples of the stream held in ``ring`` (absolute indexes ``start``..``end``) from
    fractional position ``pos`` on, one sample apart.

    Within 10 ms the two clocks drift apart by about a hundredth of a sample, so one
    fractional delay per frame is exact enough; the next frame starts at its own position.
    Samples outside what is held read as silence: before it, nothing was played (or it is
    long gone); after it, nothing has been played there yet.
    """
    return interpolate_frames(ring, start, end, [pos], n)


def _offsets(n: int) -> npt.NDArray[np.int64]:
    """Ring offsets of each output sample's taps, relative to a frame's integer position."""
    cached = _OFFSETS.get(n)
    if cached is None:
        cached = _OFFSETS[n] = (np.arange(n)[:, None] + _K[None, :]).astype(np.int64)
    return cached


_OFFSETS: dict[int, npt.NDArray[np.int64]] = {}


def interpolate_frames(ring: Float, start: int, end: int, positions: list[float], n: int) -> Float:
    """:func:`interpolate` for several frames of ``n`` samples at once, one position each,
    concatenated: one gather and one product for a whole chunk instead of calls per frame."""
    pos = np.asarray(positions, dtype=np.float64)
    base = np.floor(pos)
    kernels = _KERNELS[((pos - base) * len(_KERNELS)).astype(np.intp)]  # (frames, TAPS)
    idx = base.astype(np.int64)[:, None, None] + _offsets(n)  # (frames, n, TAPS)
    taps = ring[idx % len(ring)]
    if idx[0, 0, 0] < start or idx[-1, -1, -1] >= end:
        taps = np.where((idx >= start) & (idx < end), taps, np.float32(0.0))
    out: Float = np.einsum("fnt,ft->fn", taps, kernels).astype(np.float32).reshape(-1)
    return out


class _Stream:
    """One side's audio at the canceller's rate with its timeline (loop thread only)."""

    def __init__(self) -> None:
        self.timeline = Timeline(AEC_RATE)
        self._resample: Resampler | None = None
        self._rate = 0
        self._in = 0.0  # device samples seen, counted at the canceller's rate
        self.count = 0  # samples at the canceller's rate produced

    def add(self, pcm: bytes, rate: int, t: float | None) -> Int16Array:
        """Resample one device block; its first sample was converted at ``t``."""
        return self.add_blocks([(pcm, rate, t)])

    def add_blocks(self, blocks: list[tuple[bytes, int, float | None]]) -> Int16Array:
        """Resample consecutive device blocks (one rate) at once, each block's time reported."""
        rate = blocks[0][1]
        if rate != self._rate:  # (a device keeps its rate: this is the first block)
            self._resample, self._rate = Resampler(rate, AEC_RATE), rate
        assert self._resample is not None
        for pcm, _, t in blocks:
            if t is not None:
                self.timeline.report(self._in, t)
            self._in += len(pcm) // 2 * AEC_RATE / rate
        pcm = blocks[0][0] if len(blocks) == 1 else b"".join(b[0] for b in blocks)
        x: Int16Array = np.frombuffer(self._resample(pcm), dtype=np.int16)
        self.count += len(x)
        return x


class EchoStage:
    """Aligns the played reference with the microphone and runs the canceller and the guard."""

    def __init__(
        self,
        canceller: EchoCanceller,
        *,
        lead_ms: float = 5.0,
        guard: ResidualGuard | None = None,
        max_queued: int = 400,
        quiet_after_s: float = QUIET_AFTER_S,
    ) -> None:
        self.canceller = canceller
        self.guard = guard if guard is not None else ResidualGuard()
        self.lead_s = lead_ms / 1000
        self.rate = AEC_RATE  # what :meth:`captured` returns
        # The speaker's thread appends, the loop pops from the other end: a deque does both
        # atomically, so neither side takes a lock (the speaker's thread runs 100 times a second).
        self._queue: deque[tuple[bytes, int, float | None]] = deque(maxlen=max_queued)
        self._far = _Stream()
        self._near = _Stream()
        self._ring = np.zeros(RING, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.int16)
        self._far_pos: float | None = None  # where the last frame's reference started
        self._next_frame = 0  # absolute index (canceller rate) of the next microphone frame
        self.frames = 0  # through the canceller ...
        self.quiet_frames = 0  # ... and passed through while the speaker had long been silent
        # Just past the last sample of the reference that was not silence (canceller
        # rate, absolute index): a frame whose reference starts ``_quiet`` samples after it
        # hears no echo, and skips the canceller and the guard (most of a kiosk's day).
        self._sound_end = 0
        self._quiet = int(quiet_after_s * AEC_RATE)
        self.cpu_s = 0.0  # CPU time spent here, for the benchmark's per-second figure
        self.canceller_cpu_s = 0.0  # of which in the canceller itself
        self.energy = [0.0, 0.0, 0.0]  # microphone, canceller output, guarded output (since reset)
        self.coupling = CouplingMeter()  # hears_speaker: False passes the microphone through

    # -- the speaker's side (device thread) ---------------------------------------------------

    def played(self, pcm: bytes, rate: int, dac_time: float | None) -> None:
        """The output callback handed ``pcm`` (mono PCM16 at ``rate``) to the device; its
        first sample reaches the DAC at ``dac_time`` (None: unknown, keep the last estimate)."""
        self._queue.append((pcm, rate, dac_time))

    # -- the microphone's side (event loop) ---------------------------------------------------

    def captured(self, pcm: bytes, rate: int, adc_time: float | None) -> bytes:
        """The microphone block ``pcm`` (mono PCM16 at ``rate``, first sample converted at
        ``adc_time``), echo removed, as PCM16 at :attr:`rate`: whole frames, and only those
        whose reference has been played (the rest waits for the next block, or at most
        ``HOLD_FRAMES`` when blocks are shorter than that).

        The block's frames go through the canceller in one call and their levels are taken
        together: a block is a chunk (40 ms), and numpy and the canceller cost per call."""
        c0 = time.thread_time()
        self._take_reference()
        x = self._near.add(pcm, rate, adc_time)
        self._pending = np.concatenate([self._pending, x]) if len(self._pending) else x
        hold = max(HOLD_FRAMES * FRAME, len(x))
        positions: list[float | None] = []
        while (len(positions) + 1) * FRAME <= len(self._pending):
            ready, pos = self._far_position(force=len(self._pending) - len(positions) * FRAME > hold)
            if not ready:
                break  # its reference is still on its way from the speaker's thread
            positions.append(pos)
            self._next_frame += FRAME
        out = b""
        if positions:
            n = len(positions) * FRAME
            near, self._pending = self._pending[:n], self._pending[n:]
            if self._all_quiet(positions):
                out = self.canceller.quiet(near).tobytes()
                self.quiet_frames += len(positions)
            else:
                out = self._cancel(near, self._far_frames(positions))
        self.cpu_s += time.thread_time() - c0
        return out

    def _all_quiet(self, positions: list[float | None]) -> bool:
        """True when the speaker had been silent for ``quiet_after_s`` before the first of
        these frames' reference (and so for all of them: positions only move forward).

        Then there is no echo to remove: the frames take the canceller's quiet path (its
        filtering without the cancelling, a tenth of its cost) and skip the guard (it caps
        nothing without a reference). The canceller keeps what it learned: it is handed
        the next frame that has sound within ``quiet_after_s`` of its reference, with the
        state (filter, delay estimate) it had before the pause. Between replies and all
        the time nobody is there, the echo stage then costs half as much (what is left:
        resampling both sides, their timelines, the frames' positions).
        """
        first = next((p for p in positions if p is not None), None)
        return first is None or first - self._quiet >= self._sound_end

    def _cancel(self, near: Int16Array, far: Float) -> bytes:
        """Whole frames through the canceller, the coupling meter and the guard."""
        c1 = time.thread_time()
        cleaned = self.canceller.process(near, np.clip(far, -32768, 32767).astype(np.int16))
        self.canceller_cpu_s += time.thread_time() - c1
        frames = len(near) // FRAME
        near_f = near.astype(np.float32).reshape(frames, FRAME)
        far_f = far.reshape(frames, FRAME)
        e_near = np.einsum("ij,ij->i", near_f, near_f).tolist()
        e_far = np.einsum("ij,ij->i", far_f, far_f).tolist()
        for i in range(frames):
            if self.coupling.add_energy(e_near[i], e_far[i], FRAME):
                log.info(
                    "echo canceller: %s",
                    "the microphone hears the speaker: cancelling"
                    if self.coupling.hears
                    else "the microphone hears nothing of the speaker: passing it through",
                    extra=event("echo_path", hears_speaker=self.coupling.hears),
                )
        if not self.coupling.hears:
            cleaned = near  # no echo to remove (the canceller still runs: it stays ready)
        out_f = cleaned.astype(np.float32).reshape(frames, FRAME)
        e_out = np.einsum("ij,ij->i", out_f, out_f).tolist()
        self.energy[0] += sum(e_near)
        self.energy[1] += sum(e_out)
        changed = False
        for i in range(frames):
            if self.guard.process_energy(e_near[i] / FRAME, e_out[i] / FRAME, e_far[i] / FRAME, out_f[i]):
                changed = True
                e_out[i] = float(np.dot(out_f[i], out_f[i]))
        self.energy[2] += sum(e_out)
        self.frames += frames
        return (out_f.astype(np.int16) if changed else cleaned).tobytes()

    def _take_reference(self) -> None:
        if not self._queue:
            return
        blocks = [self._queue.popleft() for _ in range(len(self._queue))]  # (only this thread pops)
        x = self._far.add_blocks(blocks)[-RING:]  # (a speaker keeps its rate; a stalled loop: the newest 2 s)
        sound = np.flatnonzero(np.abs(x) > QUIET_LEVEL)
        if len(sound):
            self._sound_end = self._far.count - len(x) + int(sound[-1]) + 1
        at = (self._far.count - len(x)) % RING
        first = min(len(x), RING - at)  # the ring wraps at most once per batch (it holds 2 s)
        self._ring[at : at + first] = x[:first]
        self._ring[: len(x) - first] = x[first:]

    def _far_position(self, *, force: bool) -> tuple[bool, float | None]:
        """Where the reference for the next microphone frame starts: (False, None) when it
        has not been played yet (unless ``force``: then what is missing reads as silence),
        (True, None) when the timelines know nothing yet (silence).

        Where it starts follows the timelines, but never by more than ``SLEW`` samples a
        frame (ten times that while they are still settling) from where the last frame's
        continuation would start: their small refits become a gentle drift the canceller
        follows, not steps. A difference of more than ``JUMP`` samples (a timeline jumped,
        or this is the start) is taken at once.
        """
        if not (self._far.timeline.ready and self._near.timeline.ready):
            return True, None
        near_tl, far_tl = self._near.timeline, self._far.timeline
        target = far_tl.index(near_tl.time(self._next_frame) + self.lead_s)
        pos = target
        if self._far_pos is not None:
            pos = self._far_pos + FRAME * near_tl.period / far_tl.period
            slew = SLEW if near_tl.settled and far_tl.settled else 10 * SLEW
            if abs(target - pos) > JUMP:
                pos = target
            else:
                pos += max(-slew, min(slew, target - pos))
        if pos + FRAME + TAPS // 2 > self._far.count and not force:
            return False, None
        self._far_pos = pos
        return True, pos

    def _far_frames(self, positions: list[float | None]) -> Float:
        """The reference for consecutive frames (None: silence), interpolated at once."""
        end = self._far.count
        start = max(0, end - RING + TAPS)
        live = [p for p in positions if p is not None]
        if len(live) == len(positions):
            return interpolate_frames(self._ring, start, end, live, FRAME)
        far = np.zeros((len(positions), FRAME), dtype=np.float32)
        if live:
            rows = [i for i, p in enumerate(positions) if p is not None]
            far[rows] = interpolate_frames(self._ring, start, end, live, FRAME).reshape(-1, FRAME)
        return far.reshape(-1)

    # -- what the technician and the benchmark see ---------------------------------------------

    @property
    def erle_db(self) -> float:
        """The canceller's echo reduction lately (microphone over output, frames with echo)."""
        return self.guard.erle_db

    @property
    def converged(self) -> bool:
        """True once the canceller removes a good part of the echo."""
        return self.guard.converged

    def reset_counters(self) -> None:
        """Start counting the energies afresh (the self-test's burst, the bench's window)."""
        self.energy = [0.0, 0.0, 0.0]

    @property
    def erle_since_db(self) -> float:
        """Echo reduction by the canceller since :meth:`reset_counters` (microphone over its output)."""
        return 10 * math.log10(max(self.energy[0], 1.0) / max(self.energy[1], 1.0))

    @property
    def reduction_since_db(self) -> float:
        """The same with the guard: microphone over what goes to the wire."""
        return 10 * math.log10(max(self.energy[0], 1.0) / max(self.energy[2], 1.0))
