"""Barge-in in a reverberant booth, ``gate`` and ``aec`` side by side: the bench's echo figures.

Offline and deterministic: a simulated sound card (:class:`Card`) runs the booth
(:mod:`kiosk.sim.booth`) period by period, as fast as the CPU allows. The loudspeaker plays
the assistant's recorded voice without pause for breath (one long reply; interruptions are
judged, not acted on), each 10 ms period handed on 20 ms before it sounds and reported to
the echo path with its DAC time; the microphone hears the booth (and the visitor) and its
periods go through the kiosk's own capture conditioning. Then:

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
from kiosk.audio.capture import CaptureChunker
from kiosk.audio.echo import EchoPolicy
from kiosk.audio.pcm import RATE, rms_dbfs
from kiosk.sim.booth import BoothEcho, BoothSpec, voices
from kiosk.sim.vad import EnergyVad, WebRtcStartVad

PERIOD = RATE // 100  # the card's 10 ms period
AHEAD = 2  # periods handed to the speaker before they sound (its output latency)
GAP_S = 1.5  # between the assistant's replies
CHUNK_MS = 40
ASSISTANT = ("happy_a0_greeting", "happy_a1", "happy_a2", "happy_a3", "happy_a4")
VISITOR = ("interrupt_v1", "interrupt_v2", "happy_v4", "walk_v1", "consent_v2", "happy_v2")
JUDGES = ("energy", "webrtc")


@dataclass(frozen=True)
class Scene:
    """One recording: the booth, how long, and the visitor (None: echo alone)."""

    spec: BoothSpec
    seconds: float = 60.0
    warmup_s: float = 10.0
    visitor_db: float | None = None
    interruptions: int = 6
    jitter_ms: float = 0.3  # of the devices' timestamps


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
        if stage is not None:
            self.chunker.cancel_echo(stage)
        self.policy = EchoPolicy("gate" if mode == "gate" else "hardware", 0.0, 0.3)
        self._rng = np.random.default_rng(scene.spec.seed + 1000)

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
            self.chunker.feed(pcm.tobytes(), self.booth.capture_time(i) + self._jitter())
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
            self.stage.played(pcm, RATE, self.booth.play_time(b * PERIOD) + self._jitter())
        return rms_dbfs(pcm)


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
    """The bench's echo figures, worst over the seeds and both judges."""

    false_per_min: dict[str, float]
    caught: dict[str, dict[int, float]]  # mode -> level -> fraction caught (worst judge, worst seed)
    latency_ms: dict[str, dict[int, float]]  # mode -> level -> median latency over everything caught
    erle_db: float
    erle_guarded_db: float
    cpu_percent: float
    details: dict[str, object]


LEVELS = (-10, -6, 0, 6)


def measure(seeds: tuple[int, ...], seconds: float, warmup_s: float, interruptions: int) -> EchoFigures:
    """Every scene for every seed through both modes."""
    false: dict[str, float] = {}
    caught: dict[str, dict[int, float]] = {"gate": {}, "aec": {}}
    latency: dict[str, dict[int, float]] = {"gate": {}, "aec": {}}
    details: dict[str, object] = {}
    cpu_s = audio_s = 0.0
    erles: list[float] = []
    guarded: list[float] = []
    for mode in ("gate", "aec"):
        per_min = []
        for seed in seeds:
            out = run_scene(Scene(BoothSpec(seed=seed), seconds, warmup_s), mode)
            counts = {j: out.false_starts(j) for j in JUDGES}
            details[f"{mode}_seed{seed}_false"] = counts
            per_min.append(max(counts.values()) * 60 / seconds)
            if out.stage is not None:
                cpu_s += out.stage.cpu_s
                audio_s += seconds + warmup_s
        false[mode] = round(max(per_min), 2)
        for level in LEVELS:
            fractions, lats = [], []
            for seed in seeds:
                scene = Scene(BoothSpec(seed=seed), seconds, warmup_s, visitor_db=level, interruptions=interruptions)
                out = run_scene(scene, mode)
                got = {j: out.caught(j) for j in JUDGES}
                details[f"{mode}_seed{seed}_{level:+d}db_caught"] = {j: len(v) for j, v in got.items()}
                fractions.append(min(len(v) for v in got.values()) / interruptions)
                lats += [x for v in got.values() for x in v]
            caught[mode][level] = round(min(fractions), 3)
            latency[mode][level] = float(statistics.median(lats)) if lats else math.nan
    for seed in seeds:
        quiet = Scene(BoothSpec(seed=seed, noise_below_echo_db=200.0), seconds, warmup_s)
        out = run_scene(quiet, "aec")
        assert out.stage is not None
        erles.append(out.stage.erle_since_db)
        guarded.append(10 * math.log10(out.mic_energy / max(out.uplink_energy, 1.0)))
    return EchoFigures(
        false, caught, latency, round(min(erles), 1), round(min(guarded), 1), round(100 * cpu_s / audio_s, 3), details
    )
