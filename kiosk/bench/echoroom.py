"""Barge-in in a reverberant booth, ``gate`` and ``aec`` side by side: the bench's echo figures.

Offline and deterministic: a simulated sound card (:class:`Card`) runs the booth
(:mod:`kiosk.sim.booth`) period by period, as fast as the CPU allows. The loudspeaker plays
the assistant's recorded voice without pause for breath (one long reply; interruptions are
judged, not acted on), each 10 ms period handed on 20 ms before it sounds and reported to
the echo path with its DAC time; the microphone hears the booth (and the visitor) and its
periods go through the kiosk's own capture conditioning, gathered into a block per chunk
as the kiosk's microphone adapters hand them over (:class:`~kiosk.audio.capture.Gather`). Then:

* ``gate``: the kiosk's :class:`~kiosk.audio.echo.EchoPolicy` on the 40 ms chunks, told when
  each reply becomes audible and when it has played out, with the level of the last period
  handed to the speaker as its reference, as ``Kiosk`` feeds it;
* ``aec``: the echo stage (:class:`~kiosk.audio.aec.EchoStage`: alignment, WebRTC AEC3,
  the residual guard) attached to the conditioning, as ``compose`` attaches it.

The uplink is judged by the two stand-ins for the server's VAD (the simulator's energy
VAD and webrtcvad "8 of 10"): a speech start on echo alone is a false barge-in; a start
within a visitor's utterance (or 300 ms after it) catches that interruption. Before the
measured window the canceller hears ``warmup_s`` of the assistant: one canceller lives
across visits, so it is converged when a visitor talks.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from kiosk.audio.aec import EchoStage
from kiosk.audio.capture import CaptureChunker, Gather
from kiosk.audio.echo import EchoPolicy
from kiosk.audio.pcm import RATE, rms_dbfs
from kiosk.config import AudioSettings
from kiosk.sim.booth import BoothEcho, BoothSpec, voices
from kiosk.sim.vad import EnergyVad, WebRtcStartVad

PERIOD = RATE // 100  # the card's 10 ms period
AHEAD = 2  # periods handed to the speaker before they sound (its output latency)
GAP_S = 1.5  # between the assistant's replies
CHUNK_MS = 40
ASSISTANT = ("happy_a0_greeting", "happy_a1", "happy_a2", "happy_a3", "happy_a4")
VISITOR = ("interrupt_v1", "interrupt_v2", "happy_v4", "walk_v1", "consent_v2", "happy_v2")
JUDGES = ("energy", "webrtc")
_AUDIO = AudioSettings()


@dataclass(frozen=True)
class Scene:
    """One recording: the booth, how long, and the visitor (None: echo alone)."""

    spec: BoothSpec
    seconds: float = 60.0
    warmup_s: float = 10.0
    visitor_db: float | None = None
    interruptions: int = 6
    jitter_ms: float = 0.3  # of the devices' timestamps
    # The devices' periods (multiples of the card's 10 ms), the kiosk's defaults unless given:
    # one timestamp per device period reaches the echo path, on each side.
    mic_period_ms: int = _AUDIO.input_period_ms or _AUDIO.period_ms
    speaker_period_ms: int = _AUDIO.period_ms


@dataclass
class Outcome:
    """What the judges heard in the measured window of one recording."""

    starts: dict[str, list[int]]  # judge -> detection times (ms into the window)
    onsets: list[tuple[int, int]]  # (start ms, length ms) of each utterance
    stage: EchoStage | None = None
    audio_s: float = 0.0
    mic_energy: float = 0.0
    uplink_energy: float = 0.0

    def false_starts(self, judge: str) -> int:
        """Starts outside every utterance."""
        return sum(1 for s in self.starts[judge] if not any(o <= s <= o + n + 300 for o, n in self.onsets))

    def caught(self, judge: str) -> list[int]:
        """Latency (ms) of each caught interruption."""
        out = []
        for o, n in self.onsets:
            hits = [s for s in self.starts[judge] if o <= s <= o + n + 300]
            if hits:
                out.append(hits[0] - o)
        return out


@dataclass
class _Tracks:
    assistant: np.ndarray
    speaking: np.ndarray  # per period: inside a reply
    visitor: np.ndarray
    onsets: list[tuple[int, int]] = field(default_factory=list)


def _tracks(scene: Scene, booth: BoothEcho) -> _Tracks:
    pool = voices(RATE)
    total = int((scene.warmup_s + scene.seconds) * RATE) + AHEAD * PERIOD + RATE
    gap = np.zeros(int(GAP_S * RATE))
    replies = [np.concatenate([pool[n], gap]) for n in ASSISTANT]
    speaking = np.concatenate([np.arange(len(r)) < len(r) - len(gap) for r in replies])
    assistant = np.resize(np.concatenate(replies), total)
    per_period = np.resize(speaking, total)[::PERIOD]
    tracks = _Tracks(assistant, per_period, np.zeros(total))
    if scene.visitor_db is None:
        return tracks
    spacing = scene.seconds / scene.interruptions
    for k in range(scene.interruptions):
        dry = pool[VISITOR[k % len(VISITOR)]]
        wet = booth.visitor(dry, scene.visitor_db)
        at_s = scene.warmup_s + k * spacing + 0.25 * spacing
        at = int(at_s * RATE)
        n = min(len(wet), total - at)
        tracks.visitor[at : at + n] += wet[:n]
        tracks.onsets.append((int((at_s - scene.warmup_s) * 1000), int(len(dry) / RATE * 1000)))
    return tracks


class Card:
    """The simulated sound card between the kiosk's audio path and the booth."""

    def __init__(self, scene: Scene, mode: str, stage: EchoStage | None = None) -> None:
        self.scene, self.mode, self.stage = scene, mode, stage
        self.booth = BoothEcho(scene.spec, RATE)
        self.tracks = _tracks(scene, self.booth)
        self.chunker = CaptureChunker(RATE, chunk_ms=CHUNK_MS, queue_chunks=100_000)
        self.gather = Gather(RATE, 1, CHUNK_MS, self.chunker.feed)  # a block per chunk, as devices hand over
        if stage is not None:
            self.chunker.cancel_echo(stage)
        self.policy = EchoPolicy("gate" if mode == "gate" else "hardware", 0.0, 0.3)
        self._rng = np.random.default_rng(scene.spec.seed + 1000)
        self._mic_periods = max(1, scene.mic_period_ms // 10)
        self._spk_periods = max(1, scene.speaker_period_ms // 10)
        self._mic_block: list[bytes] = []
        self._mic_t = 0.0
        self._spk_block: list[bytes] = []
        self._spk_t = 0.0

    def _jitter(self) -> float:
        return float(self._rng.normal(0.0, self.scene.jitter_ms / 1000))

    def run(self) -> Outcome:
        """Play, capture and judge the whole scene."""
        sc = self.scene
        judges: dict[str, EnergyVad | WebRtcStartVad] = {
            "energy": EnergyVad(0.5, prefix_padding_ms=0),
            "webrtc": WebRtcStartVad(),
        }
        starts: dict[str, list[int]] = {j: [] for j in JUDGES}
        warm_ms = int(sc.warmup_s * 1000)
        periods = int((sc.warmup_s + sc.seconds) * 100)
        played_level = -120.0
        playing = False
        mic_e = up_e = 0.0
        for b in range(AHEAD):
            self._play(b)
        for b in range(periods):
            if self.stage is not None and b * 10 == warm_ms:
                self.stage.reset_counters()
            played_level = self._play(b + AHEAD)
            mic_s = (b + 1) / 100
            if bool(self.tracks.speaking[b + AHEAD]) != playing:  # the kiosk's on_playing
                playing = not playing
                self.policy.playback(playing, mic_s)
            i = b * PERIOD
            mic = self.booth.hear(PERIOD) + self.tracks.visitor[i : i + PERIOD]
            pcm = np.clip(np.rint(mic), -32768, 32767).astype("<i2")
            if b * 10 >= warm_ms:
                mic_e += float(np.sum(pcm.astype(np.float64) ** 2))
            self._capture(b, pcm.tobytes(), self.booth.capture_time(i))
            while not self.chunker.queue.empty():
                chunk = self.chunker.queue.get_nowait()
                self.policy.reference(played_level, mic_s)
                up = self.policy.filter(chunk, mic_s)
                for name, judge in judges.items():
                    for t in _starts(judge, up):
                        if t >= warm_ms:
                            starts[name].append(t - warm_ms)
                if b * 10 >= warm_ms:
                    up_e += float(np.sum(np.frombuffer(up, dtype="<i2").astype(np.float64) ** 2))
        return Outcome(starts, self.tracks.onsets, self.stage, sc.seconds, mic_e, up_e)

    def _play(self, b: int) -> float:
        """Hand period ``b`` of the assistant to the speaker; returns its level."""
        block = self.tracks.assistant[b * PERIOD : (b + 1) * PERIOD]
        pcm = np.clip(np.rint(block), -32768, 32767).astype("<i2").tobytes()
        self.booth.play(block)
        if self.stage is not None:
            # A device period is handed over whole, with the DAC time of its first sample.
            if b % self._spk_periods == 0:
                self._spk_t = self.booth.play_time(b * PERIOD) + self._jitter()
            self._spk_block.append(pcm)
            if len(self._spk_block) == self._spk_periods:
                self.stage.played(b"".join(self._spk_block), RATE, self._spk_t)
                self._spk_block.clear()
        return rms_dbfs(pcm)

    def _capture(self, b: int, pcm: bytes, adc_time: float) -> None:
        """Microphone period ``b`` (10 ms); a device period of several goes on whole, stamped once."""
        if b % self._mic_periods == 0:
            self._mic_t = adc_time + self._jitter()
        self._mic_block.append(pcm)
        if len(self._mic_block) == self._mic_periods:
            self.gather.add(b"".join(self._mic_block), self._mic_t)
            self._mic_block.clear()


def _starts(judge: EnergyVad | WebRtcStartVad, pcm: bytes) -> list[int]:
    if isinstance(judge, WebRtcStartVad):
        return judge.feed(pcm)
    # The energy VAD reports the start 3 frames before it knew: add them back (detection time).
    return [e.at_ms + 30 for e in judge.feed(pcm) if e.started]


def aec_stage() -> EchoStage:
    """The stage as the kiosk builds it for ``echo.mode = "aec"``."""
    from kiosk.audio.webrtc_aec import WebRtcCanceller

    return EchoStage(WebRtcCanceller())


def run_scene(scene: Scene, mode: str) -> Outcome:
    """One recording through one mode."""
    return Card(scene, mode, aec_stage() if mode == "aec" else None).run()


@dataclass
class EchoFigures:
    """The bench's echo figures: the worst over the seeds and both judges."""

    false_per_min: dict[str, float]  # mode -> false barge-ins a minute on echo alone
    caught: dict[str, dict[int, float]]  # mode -> level (dB) -> fraction of interruptions caught
    latency_ms: dict[str, dict[int, float]]  # mode -> level -> median detection latency of those caught
    erle_db: float  # the canceller's, after convergence, in the booth without its noise
    reduction_db: float  # the same for the whole echo path (canceller and guard)
    canceller_cpu_percent: float  # CPU of the canceller itself per second of audio
    stage_cpu_percent: float  # the whole echo stage: alignment, resampling, canceller, guard
    details: dict[str, object] = field(default_factory=dict)


LEVELS = (-10, -6, 0, 6)


def measure(
    seeds: tuple[int, ...],
    seconds: float,
    warmup_s: float,
    interruptions: int,
    periods_ms: tuple[int, int] = (Scene.mic_period_ms, Scene.speaker_period_ms),
) -> EchoFigures:
    """Every scene for every seed through both modes, the devices at ``periods_ms``
    (microphone, speaker)."""
    devices = {"mic_period_ms": periods_ms[0], "speaker_period_ms": periods_ms[1]}
    fig = EchoFigures({}, {"gate": {}, "aec": {}}, {"gate": {}, "aec": {}}, math.inf, math.inf, 0.0, 0.0)
    cpu = [0.0, 0.0, 0.0]  # canceller, stage, audio seconds

    def run(scene: Scene, mode: str) -> Outcome:
        out = run_scene(scene, mode)
        if out.stage is not None:
            cpu[0] += out.stage.canceller_cpu_s
            cpu[1] += out.stage.cpu_s
            cpu[2] += scene.seconds + scene.warmup_s
        return out

    for mode in ("gate", "aec"):
        per_min = []
        for seed in seeds:
            out = run(Scene(BoothSpec(seed=seed), seconds, warmup_s, **devices), mode)
            counts = {j: out.false_starts(j) for j in JUDGES}
            fig.details[f"{mode}_seed{seed}_false_starts"] = counts
            per_min.append(max(counts.values()) * 60 / seconds)
        fig.false_per_min[mode] = round(max(per_min), 2)
        for level in LEVELS:
            fractions, lats = [], []
            for seed in seeds:
                out = run(Scene(BoothSpec(seed=seed), seconds, warmup_s, level, interruptions, **devices), mode)
                got = {j: out.caught(j) for j in JUDGES}
                fig.details[f"{mode}_seed{seed}_{level:+d}db_caught"] = {j: len(v) for j, v in got.items()}
                fractions.append(min(len(v) for v in got.values()) / interruptions)
                lats += [x for v in got.values() for x in v]
            fig.caught[mode][level] = round(min(fractions), 3)
            fig.latency_ms[mode][level] = float(statistics.median(lats)) if lats else math.nan
    for seed in seeds:
        quiet = BoothSpec(seed=seed, noise_below_echo_db=200.0)
        out = run(Scene(quiet, seconds, warmup_s, **devices), "aec")
        assert out.stage is not None
        fig.erle_db = round(min(fig.erle_db, out.stage.erle_since_db), 1)
        fig.reduction_db = round(min(fig.reduction_db, out.stage.reduction_since_db), 1)
    fig.canceller_cpu_percent = round(100 * cpu[0] / cpu[2], 3)
    fig.stage_cpu_percent = round(100 * cpu[1] / cpu[2], 3)
    return fig


_RSS = """
import sys
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
import numpy as np
import kiosk.audio.capture, kiosk.audio.resample, kiosk.audio.pcm  # what the kiosk loads anyway
rng = np.random.default_rng(0)
frames = [(rng.standard_normal(240) * 3000).astype('<i2').tobytes() for _ in range(100)]
before = rss()
from kiosk.audio.aec import EchoStage
from kiosk.audio.webrtc_aec import WebRtcCanceller
stage = EchoStage(WebRtcCanceller())
for b in range(3000):
    stage.played(frames[b % 100], 24000, b * 0.01 + 0.02)
    stage.captured(frames[(b + 7) % 100], 24000, b * 0.01)
print(rss() - before)
"""


def rss_added_mb() -> float:
    """Resident memory the echo stage adds (its modules, the canceller, 30 s of running), in
    a fresh process after what the kiosk loads anyway (numpy, soxr)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _RSS], capture_output=True, text=True, timeout=120, check=True)
    return round(int(done.stdout.strip().splitlines()[-1]) / 1024, 2)
