"""A reverberant booth: what a microphone hears of a loudspeaker (and a visitor) in a real room.

A single delayed copy of the playback is not a room. This one has, all seeded and in numpy:

* an impulse response per source: the direct path, early reflections 5-30 ms after it and
  an exponentially decaying noise tail whose amplitude falls 60 dB in ``rt60_s``; the tail's
  energy against the direct sound follows the source's distance against the room's
  critical distance (so the loudspeaker 0.3 m away is mostly direct sound, the visitor
  0.9 m away mostly room);
* the loudspeaker: mild soft clipping (``tanh``) of what is played, before the room;
* timing: the echo arrives ``delay_ms`` after the speaker's timestamps say it was played
  (latency the devices do not report), the microphone's clock drifts ``drift_ppm`` against
  the speaker's, and at ``jump_at_s`` the microphone loses ``jump_ms`` of audio (an
  overrun: from then on its samples are that much later than their count says);
* noise: babble (other voices) and pink noise ``noise_below_echo_db`` below the echo.

Time model (what the timestamps of a simulated device report): speaker sample ``j`` sounds
at ``j / rate`` seconds; microphone sample ``i`` is captured at ``i * (1 + drift) / rate``
(plus the jump once it has happened). The microphone at time ``t`` hears the room's
response to what the loudspeaker sounded at ``t - delay``. :class:`BoothEcho` computes that
as a stream (the test rig plays and captures block by block) or for a whole recording at
once (the bench).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from kiosk.audio.pcm import read_wav
from kiosk.sim.scenario import SCENARIOS

Float = npt.NDArray[np.float64]
SOUND_M_S = 343.0
FULL_SCALE = 32768.0
PLAYED_DBFS = -23.0  # active speech level of the assistant's recorded voice (the fixtures)


@dataclass(frozen=True)
class BoothSpec:
    """The room, the devices' timing and the noise; ``seed`` makes every random part repeatable."""

    room_m: tuple[float, float, float] = (4.5, 3.5, 2.8)
    rt60_s: float = 0.5
    speaker_m: float = 0.3  # loudspeaker to microphone
    visitor_m: float = 0.9  # visitor's mouth to microphone
    coupling_db: float = 3.0  # echo speech level against the played speech level
    delay_ms: float = 40.0
    drift_ppm: float = 80.0
    jump_ms: float = 2.0
    jump_at_s: float = 20.0
    clip_drive: float = 1.5  # tanh(drive * x) / drive; 0 for a linear loudspeaker
    noise_below_echo_db: float = 25.0
    seed: int = 1

    def seeded(self, seed: int) -> BoothSpec:
        """The same booth with other random draws (impulse responses, noise)."""
        return replace(self, seed=seed)

    @property
    def echo_dbfs(self) -> float:
        """The echo's active speech level at the microphone for the assistant's usual level."""
        return PLAYED_DBFS + self.coupling_db


def critical_distance_m(room_m: tuple[float, float, float], rt60_s: float) -> float:
    """Where direct and reverberant energy are equal (Sabine): 0.057 * sqrt(V / RT60)."""
    volume = room_m[0] * room_m[1] * room_m[2]
    return 0.057 * math.sqrt(volume / rt60_s)


def impulse_response(spec: BoothSpec, distance_m: float, rate: int, rng: np.random.Generator) -> Float:
    """Direct path, early reflections and an exponential tail, normalised to unit energy."""
    n = int(spec.rt60_s * rate)
    h = np.zeros(n + int(0.05 * rate))
    direct = int(distance_m / SOUND_M_S * rate)
    h[direct] = 1.0
    for _ in range(8):  # first reflections: walls, floor, ceiling, the booth's panels
        after = float(rng.uniform(0.005, 0.030))
        path = distance_m + after * SOUND_M_S
        h[direct + int(after * rate)] += rng.uniform(0.5, 0.9) * distance_m / path
    # The diffuse tail: its energy against the direct sound's is (d / critical distance)^2.
    t = np.arange(n - direct) / rate
    tail = rng.standard_normal(n - direct) * np.exp(-6.908 * t / spec.rt60_s)
    tail *= np.clip(t / 0.01, 0.0, 1.0)  # builds up over the first reflections
    tail *= math.sqrt((distance_m / critical_distance_m(spec.room_m, spec.rt60_s)) ** 2 / np.sum(tail**2))
    h[direct : direct + len(tail)] += tail
    return h / math.sqrt(float(np.sum(h**2)))


def loudspeaker(x: Float, drive: float) -> Float:
    """Mild soft clipping of a full-scale-normalised signal."""
    if drive <= 0:
        return x
    out: Float = np.tanh(drive * x) / drive
    return out


def speech_level_dbfs(x: npt.ArrayLike, rate: int) -> float:
    """Active speech level: RMS over the 10 ms frames within 30 dB of the loudest one."""
    a = np.asarray(x, dtype=np.float64)
    frame = rate // 100
    a = a[: len(a) // frame * frame].reshape(-1, frame)
    if a.size == 0:
        return -120.0
    power = np.mean(a * a, axis=1)
    if power.max() <= 0:
        return -120.0
    active = power[power > power.max() * 1e-3]
    return 10 * math.log10(float(np.mean(active)) / FULL_SCALE**2)


def fft_convolve(x: Float, h: Float) -> Float:
    """Full linear convolution through one FFT (a long response makes direct convolution slow)."""
    n = len(x) + len(h) - 1
    size = 1 << math.ceil(math.log2(max(n, 1)))
    out: Float = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]
    return out


def pink_noise(n: int, rng: np.random.Generator) -> Float:
    """Unit-RMS noise with a 1/f power spectrum."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    out: Float = np.asarray(x / (np.sqrt(np.mean(x * x)) + 1e-12), dtype=np.float64)
    return out


def voices(rate: int) -> dict[str, Float]:
    """The recorded voices shipped with the simulator, by name (babble, and the bench's
    visitor and assistant)."""
    out = {}
    for p in SCENARIOS.joinpath("audio").iterdir():
        if p.name.endswith(".wav"):
            x = np.frombuffer(read_wav(p), dtype="<i2").astype(np.float64)
            out[p.name.removesuffix(".wav")] = x if rate == 24000 else _resample(x, 24000, rate)
    return dict(sorted(out.items()))


def _resample(x: Float, src: int, dst: int) -> Float:
    import soxr

    out: Float = np.asarray(soxr.resample(x, src, dst), dtype=np.float64)
    return out


def babble(n: int, rate: int, rng: np.random.Generator, talkers: int = 6) -> Float:
    """Unit-RMS babble: several voices at once, each looped from a random point."""
    pool = list(voices(rate).values())
    x = np.zeros(n)
    for _ in range(talkers):
        v = pool[int(rng.integers(len(pool)))]
        start = int(rng.integers(len(v)))
        x += np.resize(np.roll(v, -start), n) * rng.uniform(0.5, 1.0)
    out: Float = x / (np.sqrt(np.mean(x * x)) + 1e-12)
    return out


class BoothEcho:
    """The microphone's view of the booth, sample by sample: echo of what was played, plus noise.

    ``play`` appends what the loudspeaker sounded (its timeline, silence included);
    ``hear(n)`` returns the next ``n`` microphone samples (float, PCM16 scale) once enough
    has been played (``ready(n)``). Visitors are added by :meth:`visitor`.
    """

    def __init__(self, spec: BoothSpec, rate: int, *, noise_s: float = 30.0) -> None:
        self.spec, self.rate = spec, rate
        rng = np.random.default_rng(spec.seed)
        self.h = impulse_response(spec, spec.speaker_m, rate, rng)
        self.h_visitor = impulse_response(spec, spec.visitor_m, rate, rng)
        # The RIR has unit energy, so the echo's level follows the played level plus coupling
        # (the clipping takes a little off the peaks).
        self._gain = 10 ** (spec.coupling_db / 20)
        noise_rms = FULL_SCALE * 10 ** ((spec.echo_dbfs - spec.noise_below_echo_db) / 20)
        n_noise = int(noise_s * rate)
        mix = babble(n_noise, rate, rng) + pink_noise(n_noise, rng)
        self._noise = mix / np.sqrt(np.mean(mix * mix)) * noise_rms
        self._fft_n = 1 << math.ceil(math.log2(len(self.h) + 4096))
        self._block = self._fft_n - len(self.h) + 1  # the most samples one FFT convolves
        self._h_spec = np.fft.rfft(self.h, self._fft_n)
        self._wet = np.zeros(0)  # the room's response to everything played, in speaker time
        self.played = 0  # speaker samples sounded so far
        self.heard = 0  # microphone samples produced so far
        self._drift = spec.drift_ppm * 1e-6

    # -- timing ------------------------------------------------------------------------------

    def capture_time(self, i: float) -> float:
        """When microphone sample ``i`` was captured (seconds, the speaker's clock)."""
        return float(self._capture_times(np.array([i], dtype=np.float64))[0])

    def _capture_times(self, i: Float) -> Float:
        t = i * (1 + self._drift) / self.rate
        out: Float = t + np.where(t >= self.spec.jump_at_s, self.spec.jump_ms / 1000, 0.0)
        return out

    def play_time(self, j: int) -> float:
        """When speaker sample ``j`` sounded (seconds)."""
        return j / self.rate

    def _source_pos(self, i: Float) -> Float:
        """Speaker-timeline position (samples, fractional) that microphone samples ``i`` hear."""
        out: Float = (self._capture_times(i) - self.spec.delay_ms / 1000) * self.rate
        return out

    def needed(self, n: int) -> int:
        """Speaker samples that must have been played before ``hear(n)`` can answer."""
        end = float(self._source_pos(np.array([self.heard + n], dtype=np.float64))[0])
        return max(0, math.ceil(end) + 2)

    def ready(self, n: int) -> bool:
        """True once enough has been played to hear ``n`` more samples."""
        return self.played >= self.needed(n)

    # -- sound -------------------------------------------------------------------------------

    def play(self, pcm: npt.ArrayLike) -> None:
        """The loudspeaker sounds ``pcm`` (PCM16 scale), right after what it sounded before."""
        x = loudspeaker(np.asarray(pcm, dtype=np.float64) / FULL_SCALE, self.spec.clip_drive) * FULL_SCALE
        if len(self._wet) < self.played + len(x) + len(self.h):
            grow = max(len(self._wet), self.played + len(x) + len(self.h))
            self._wet = np.concatenate([self._wet, np.zeros(grow - len(self._wet) + self.rate)])
        for k in range(0, len(x), self._block):  # overlap-add, one FFT per block
            seg = x[k : k + self._block]
            y = np.fft.irfft(np.fft.rfft(seg, self._fft_n) * self._h_spec, self._fft_n)[: len(seg) + len(self.h) - 1]
            at = self.played + k
            self._wet[at : at + len(y)] += y * self._gain
        self.played += len(x)

    def hear(self, n: int) -> Float:
        """The next ``n`` microphone samples: the echo (zero where nothing was played yet) plus noise."""
        pos = self._source_pos(np.arange(self.heard, self.heard + n, dtype=np.float64))
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        valid = (lo >= 0) & (lo + 1 < min(self.played, len(self._wet)))
        echo = np.zeros(n)
        lv = lo[valid]
        echo[valid] = self._wet[lv] * (1 - frac[valid]) + self._wet[lv + 1] * frac[valid]
        idx = np.arange(self.heard, self.heard + n) % len(self._noise)
        self.heard += n
        out: Float = echo + self._noise[idx]
        return out

    def visitor(self, pcm: npt.ArrayLike, level_db: float) -> Float:
        """A visitor's dry speech as the microphone hears it, ``level_db`` against the echo's level."""
        x = np.asarray(pcm, dtype=np.float64)
        wet = fft_convolve(x, self.h_visitor)[: len(x) + len(self.h_visitor) // 4]
        target = self.spec.echo_dbfs + level_db
        out: Float = wet * 10 ** ((target - speech_level_dbfs(wet, self.rate)) / 20)
        return out
