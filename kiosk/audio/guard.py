"""The residual-echo guard: what the echo canceller leaves behind must not start a turn.

WebRTC's AEC3 removes 30 dB and more of the echo in a reverberant booth, but now and then,
mostly at the onset of a loud phrase and while it re-converges, 30-50 ms of echo get
through only 5-15 dB down: enough for a server's VAD to hear "speech". A visitor talking
over the assistant looks different in one way that matters: a visitor keeps talking.

Per 10 ms frame, the guard knows the microphone (``near``), the canceller's output and the
reference the canceller was given. It learns how loud the echo is at the microphone for a
given reference (:class:`EchoEnvelope`: the reference's level over the last 640 ms through
learned weights, i.e. delay, room and loudspeaker gain) and caps the output a safe margin
(``cap_db``) below that echo level while the assistant is audible, except:

* where no echo is expected (the assistant silent for a while): the output passes;
* once the output has stood above the residual zone (``evidence_db`` under the echo
  level) in most of the last frames (``open_frames`` of ``window_frames``): that is
  someone talking, and the output passes until they have been quiet for ``hold_ms``.

A residual burst is too short to open it; a visitor opens it within about 100 ms and is
heard from then on (before that the uplink carries them capped, not silenced). While the
echo's level is still being learned (the first seconds the assistant is heard after
start-up), all the microphone hears while the assistant is audible counts as echo and
nobody can interrupt (150 ms after it stops, the microphone passes again); where the
canceller finds nothing to remove (a microphone that does not hear the speaker) the guard
stays out of the way.
The gain changes as a ramp across each frame: no clicks, and no 10 ms chopping that a VAD
could mistake for syllables. Pure: frames in, frames out.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Float = npt.NDArray[np.float32]
FULL = 32768.0
RAMP = 32  # samples over which the gain changes (2 ms at 16 kHz)
LEARNED = 200  # frames of mostly echo after which the echo's level is known
NOW_FRAMES = 15  # "the assistant is audible now": the direct sound and early reflections (150 ms)
_RAMP = np.linspace(0.0, 1.0, RAMP, dtype=np.float32)


def db_to_power(db: float) -> float:
    """A power ratio from decibels."""
    return float(10.0 ** (db / 10.0))


def power_db(power: float) -> float:
    """dBFS of a mean-square PCM16-scale power."""
    return 10.0 * math.log10(max(power, 1e-3) / (FULL * FULL))


class EchoEnvelope:
    """The echo's RMS at the microphone, predicted from the reference's recent frame RMS.

    Normalised LMS on frame magnitudes over ``taps`` frames (10 ms each): the weights learn
    the delay, the room's decay and the coupling. They only adapt on frames the canceller
    found to be mostly echo, so a visitor's voice does not teach it that echo is louder.
    """

    def __init__(self, taps: int = 64, step: float = 0.05) -> None:
        self.taps, self.step = taps, step
        self.w = np.zeros(taps)
        # The last ``taps`` reference magnitudes, newest first, are ``_buf[_pos:_pos + taps]``:
        # each value is written twice so that window is always one contiguous view.
        self._buf = np.zeros(2 * taps)
        self._pos = taps
        self._floor = taps * (FULL * 10 ** (-60 / 20)) ** 2  # regularisation: a quiet reference learns nothing
        self.updates = 0

    def push(self, far_rms: float) -> float:
        """Add the reference's newest frame; returns the predicted echo RMS for this frame."""
        self._pos = self._pos - 1 if self._pos > 0 else self.taps - 1
        self._buf[self._pos] = self._buf[self._pos + self.taps] = far_rms
        return float(np.dot(self.w, self._buf[self._pos : self._pos + self.taps]))

    def learn(self, predicted: float, near_rms: float) -> None:
        """The microphone held only echo this frame (``near_rms``): move towards it."""
        x = self._buf[self._pos : self._pos + self.taps]
        self.w += self.step * (near_rms - predicted) * x / (float(np.dot(x, x)) + self._floor)
        np.maximum(self.w, 0.0, out=self.w)
        self.updates += 1


@dataclass
class ResidualGuard:
    """Caps residual echo below the echo level until someone keeps talking over it."""

    cap_db: float = -26.0  # the output's ceiling under the predicted echo level
    evidence_db: float = -20.0  # output above echo level + this counts as someone talking
    window_frames: int = 12
    open_frames: int = 6
    hold_ms: int = 300
    far_active_dbfs: float = -55.0  # reference louder than this in the last 500 ms: echo expected
    converged_erle_db: float = 12.0
    envelope: EchoEnvelope = field(default_factory=EchoEnvelope)
    # The canceller's echo reduction, smoothed over frames with echo. It starts as if the
    # canceller worked, so the guard protects from the first frame; where there is no echo
    # to remove it falls under 6 dB within about 0.6 s of the assistant speaking.
    erle_db: float = 20.0
    capped: int = 0  # frames turned down
    _far_recent: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    _evidence: deque[bool] = field(default_factory=lambda: deque(maxlen=12))
    _open_left: int = 0
    _noise: float = (FULL * 1e-3) ** 2  # the output's noise floor (power, from -60 dBFS), tracked from below
    _gain: float = 1.0
    _loud: float = 0.0
    _since_loud: int = NOW_FRAMES  # frames since the reference was last loud

    def __post_init__(self) -> None:
        self._evidence = deque(maxlen=self.window_frames)
        self._loud = (FULL * 10 ** (-50 / 20)) ** 2

    @property
    def converged(self) -> bool:
        """True once the canceller removes a good part of the echo and the envelope has learned."""
        return self.envelope.updates >= LEARNED and self.erle_db >= self.converged_erle_db

    @property
    def open(self) -> bool:
        """True while someone is judged to be talking over the echo."""
        return self._open_left > 0

    def process(self, near: Float, far: Float, out: Float) -> bool:
        """Guard one output frame (float, PCM16 scale, modified in place); True when it was changed."""
        n = len(near)
        return self.process_energy(
            float(np.dot(near, near)) / n, float(np.dot(out, out)) / n, float(np.dot(far, far)) / n, out
        )

    def process_energy(self, near_power: float, out_power: float, far_power: float, out: Float) -> bool:
        """:meth:`process` with the frame's mean-square powers already worked out (the echo
        stage takes a block's at once)."""
        p_near, p_out, p_far = near_power + 1.0, out_power + 1.0, far_power
        echo_rms = self.envelope.push(math.sqrt(p_far))
        echo = echo_rms * echo_rms + 1.0
        self._far_recent.append(p_far)
        # The noise floor: falls at once, rises 5 dB a second (speech's pauses keep it down).
        self._noise = min(p_out, self._noise * 1.0116)
        loud_far = (FULL * 10 ** (self.far_active_dbfs / 20)) ** 2
        far_active = max(self._far_recent) > loud_far
        self._since_loud = 0 if p_far > loud_far else self._since_loud + 1
        if p_far > self._loud:  # the assistant is loud: is there echo, and how much is taken out?
            # A microphone 20 dB under that hears no echo at all: the canceller removes nothing.
            removed = 10 * math.log10(p_near / p_out) if p_near > self._loud * 1e-2 else 0.0
            self.erle_db += 0.02 * (removed - self.erle_db)
        if far_active and p_out < p_near * 0.1:  # mostly echo: the canceller took 10 dB or more
            self.envelope.learn(echo_rms, math.sqrt(p_near))
        gain = 1.0
        if far_active:
            cap = self._cap(p_near, p_out, echo)
            if cap is not None and p_out > cap:
                gain = math.sqrt(cap / p_out)
                self.capped += 1
        if gain != 1.0 or self._gain != 1.0:  # (frames are at least RAMP long)
            # A 2 ms ramp from the last frame's gain: no click, and the frame is capped at once.
            out[:RAMP] *= self._gain + (gain - self._gain) * _RAMP
            out[RAMP:] *= gain
        changed = gain != 1.0 or self._gain != 1.0
        self._gain = gain
        return changed

    def _cap(self, p_near: float, p_out: float, echo: float) -> float | None:
        """The ceiling for this frame's output power, or None to let it pass."""
        if self.envelope.updates < LEARNED:
            if self.erle_db < 6.0:
                return None  # the canceller finds no echo to remove (none, or the mic hears none)
            if self._since_loud >= NOW_FRAMES:
                # The assistant stopped more than 150 ms ago: its reverberant tail is 18 dB
                # down (RT60 0.5 s) and the canceller takes it; a visitor answering at once
                # in the first visit after start-up must be heard.
                return None
            # Still learning the echo's level (the first seconds the assistant is heard after
            # start-up): all the microphone hears counts as echo, and the canceller's first
            # seconds are its least steady, so 6 dB more margin and no opening at all.
            return max(p_near * db_to_power(self.cap_db - 6.0), self._noise)
        if echo < self._noise:
            return None  # the echo is under the noise: nothing to hide
        # Someone talking: the output stands out of the residual zone, unless the canceller
        # simply let through what the microphone heard while that was no louder than the
        # echo is (a reverberant tail it does not model, a moment it lost track).
        passed_through = p_out > p_near * 0.25 and p_near < echo * 2.0
        self._evidence.append(
            not passed_through and p_out > max(echo * db_to_power(self.evidence_db), self._noise * 10.0)
        )
        if sum(self._evidence) >= self.open_frames:
            self._open_left = self.hold_ms // 10
        elif self._open_left > 0:
            self._open_left -= 1
        if self._open_left > 0:
            return None
        return max(echo * db_to_power(self.cap_db), self._noise)


class CouplingMeter:
    """Does the microphone hear the loudspeaker at all?

    Per 100 ms block in which the assistant is loud, the microphone's energy against the
    reference's. With any acoustic coupling every such block carries echo, so even its
    quietest blocks stand well above ``silent_db``; a microphone that never hears the
    speaker (a headset, a wrong device, the bench's echo-free card) has blocks down at its
    noise floor. Then there is nothing to cancel, and a canceller that has never seen the
    echo path only gets in the way: WebRTC's AEC3 keeps suppressing a visitor talking over
    the assistant, for echo it assumes but never finds. Until a second of the assistant has
    been heard the microphone counts as hearing it (the safe side). Pure.
    """

    BLOCK = 10  # frames per block
    WINDOW = 30  # blocks judged (3 s of the assistant's audio)
    MIN_BLOCKS = 10

    def __init__(self, silent_db: float = -50.0, loud_dbfs: float = -40.0) -> None:
        self.silent_db = silent_db
        self._loud = (FULL * 10 ** (loud_dbfs / 20)) ** 2
        self._ratios: deque[float] = deque(maxlen=self.WINDOW)
        self._near = self._far = 0.0
        self._n = 0
        self.hears = True

    def add(self, near: Float, far: Float) -> bool:
        """Count one frame; True when :attr:`hears` changed with it."""
        return self.add_energy(float(np.dot(near, near)), float(np.dot(far, far)), len(far))

    def add_energy(self, near: float, far: float, samples: int) -> bool:
        """:meth:`add` with the frame's energies (sums of squares) already worked out."""
        self._near += near
        self._far += far
        self._n += 1
        if self._n < self.BLOCK:
            return False
        near_e, far_e, frames = self._near, self._far, self._n
        self._near = self._far = 0.0
        self._n = 0
        if far_e / (frames * samples) < self._loud:
            return False  # the assistant quiet: no evidence either way
        self._ratios.append(10 * math.log10(max(near_e, 1.0) / far_e))
        if len(self._ratios) < self.MIN_BLOCKS:
            return False
        # The third quietest block: one whose echo fell into the next block (the onset of
        # a phrase, the room's delay) does not decide alone.
        hears = sorted(self._ratios)[2] > self.silent_db
        changed, self.hears = hears != self.hears, hears
        return changed
