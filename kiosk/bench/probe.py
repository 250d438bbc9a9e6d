"""Measuring the kiosk from outside: marked audio, a FIFO sound card, a timed jitter buffer, a probing wire trace.

Nothing here changes the kiosk's code path. Audio carries markers so a chunk can be
recognised wherever it shows up:

* every 10 ms period the "sound card" writes into the microphone FIFO starts with a quiet
  marker holding its sequence number (far below the simulator's VAD threshold), so an
  ``input_audio_buffer.append`` can be traced back to the moment its last period was
  captured. An echo canceller in the path reshapes the samples and the marker with them:
  then :class:`TimedMicrophone` notes, for each chunk the conditioning completes, the
  period whose arrival completed it, and the trace finds the chunk by its bytes;
* every 100 ms of the simulator's reply audio (one ``output_audio.delta``) starts with a
  loud marker holding (reply, delta index), so a delta can be followed from the wire into
  the jitter buffer and out to the device, and the device output tells how much of an
  item was really played (the truth for truncation).

Timestamps are ``time.monotonic()``, the clock of asyncio's default loop (``loop.time()``),
so device-thread and event-loop times compare directly.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kiosk.audio.files import FileMicrophone
from kiosk.audio.pcm import Int16Array
from kiosk.audio.playback import PlaybackBuffer
from kiosk.realtime.connection import TraceWriter
from kiosk.realtime.events import Event

PERIOD = 240  # samples in 10 ms at 24 kHz: the card's period
DELTA = 2400  # samples in one simulator delta (100 ms)
REPLY_MARK = (32767, -32768, 32767, -32768)  # full-scale alternation: never in synthesized speech
MIC_MARK = (7, -7, 7, -7)  # about -65 dBFS with its payload: silence to any VAD
MIC_BASE = 200  # the period number is written as two digits in this base
# The card's microphone clock runs 0.3 % slow against the speaker's, as two crystals would
# drift: otherwise both clocks stay in one phase for the whole run, and the device-period
# wait every reply start sees (0 to 10 ms) would be the same arbitrary value every time.
MIC_PERIOD_S = 0.01 * 1.003


def mark_reply(pcm: bytes, reply: int) -> bytes:
    """``pcm`` with a (reply, delta index) marker at the start of every 100 ms delta."""
    x = np.frombuffer(pcm, dtype="<i2").copy()
    for k, i in enumerate(range(0, len(x) - 6, DELTA)):
        x[i : i + 4] = REPLY_MARK
        x[i + 4], x[i + 5] = reply, k
    return x.tobytes()


def reply_marks(x: Int16Array) -> list[tuple[int, int, int]]:
    """(sample offset, reply, delta index) of every complete reply marker in ``x``."""
    if len(x) < 6:
        return []
    a, b = REPLY_MARK[0], REPLY_MARK[1]
    hit = (x[:-5] == a) & (x[1:-4] == b) & (x[2:-3] == a) & (x[3:-2] == b)
    # int() first: numpy 2.5's stubs type the elements of flatnonzero() as float64, an invalid index.
    return [(i, int(x[i + 4]), int(x[i + 5])) for i in map(int, np.flatnonzero(hit))]


def mic_mark(period: Int16Array, seq: int) -> None:
    """Write the marker of period ``seq`` into its first six samples (in place)."""
    period[:4] = MIC_MARK
    period[4], period[5] = divmod(seq % (MIC_BASE * MIC_BASE), MIC_BASE)


def mic_seq(pcm: bytes) -> int | None:
    """The period number marked at the start of the *last* period of an uplink chunk."""
    x = np.frombuffer(pcm, dtype="<i2")
    if len(x) < PERIOD:
        return None
    p = x[len(x) - PERIOD :]
    if tuple(int(v) for v in p[:4]) != MIC_MARK:
        return None
    return int(p[4]) * MIC_BASE + int(p[5])


@dataclass
class _Say:
    pcm: Int16Array
    done: threading.Event = field(default_factory=threading.Event)
    pos: int = 0


class FifoCard:
    """The sound card's microphone: a FIFO fed one marked 10 ms period at a time, in real time.

    ``FileMicrophone`` reads ``mic_path`` unpaced (a FIFO), so this card's clock thread
    sets the pace, as a sound card would, and the moment a period is written is the
    moment the microphone adapter's thread gets it. The speaker needs no card: a
    ``RawSpeaker`` on ``/dev/null`` paces itself in real time, one period per 10 ms, like a
    clocked device. (A FIFO is no good there: a pipe frees space a page at a time, so the
    writer would run in 85 ms bursts.)
    """

    speaker_path = Path("/dev/null")

    def __init__(self, root: Path, *, marks: bool, block_periods: int = 1) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # The microphone's device period in card periods: a block is written (and reaches the
        # kiosk's microphone thread) at once, as a device with that period delivers it.
        self.block_periods = max(1, block_periods)
        self.mic_path = root / "mic.fifo"
        self.mic_path.unlink(missing_ok=True)
        os.mkfifo(self.mic_path)
        # O_RDWR: our end never sees EOF while the kiosk opens and closes its own.
        self._mic = os.open(self.mic_path, os.O_RDWR)
        self.marks = marks
        self.captured: list[float] = []  # monotonic time each mic period was handed over, by number
        self.noise = 0  # amplitude of the room noise while nobody speaks
        self._queue: list[_Say] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="card-mic", daemon=True)
        self._cpu = 0.0  # the clock thread's own CPU seconds (not the kiosk's work)
        # Made on first use: numpy.random (about 6 MB resident) is otherwise in no kiosk
        # process, and the memory benchmark's kiosk must weigh what the daemon weighs.
        self._rng: np.random.Generator | None = None

    def start(self) -> None:
        """Start the clock."""
        self._thread.start()

    @property
    def cpu_s(self) -> float:
        """CPU seconds the card's thread used so far (subtracted from the kiosk's)."""
        return self._cpu

    def say(self, pcm: bytes) -> threading.Event:
        """Speak ``pcm`` (24 kHz mono) into the microphone; the event is set once all of it was captured."""
        s = _Say(np.frombuffer(pcm, dtype="<i2"))
        with self._lock:
            self._queue.append(s)
        return s.done

    def _next_period(self, seq: int) -> Int16Array:
        with self._lock:
            s = self._queue[0] if self._queue else None
            if s is not None:
                p = s.pcm[s.pos : s.pos + PERIOD]
                s.pos += PERIOD
                if s.pos >= len(s.pcm):
                    self._queue.pop(0)
                    s.done.set()
        out = np.zeros(PERIOD, dtype="<i2")
        if s is not None:
            out[: len(p)] = p
        elif self.noise:
            if self._rng is None:
                self._rng = np.random.default_rng(7)
            out[:] = self._rng.integers(-self.noise, self.noise, PERIOD, dtype=np.int16)
        if self.marks:
            mic_mark(out, seq)
        return out

    def _feed(self) -> None:
        t = time.monotonic()
        seq = 0
        k = self.block_periods
        while not self._stop.is_set():
            data = b"".join(self._next_period(seq + i).tobytes() for i in range(k))
            if self.marks:
                self.captured.extend([time.monotonic()] * k)
            os.write(self._mic, data)
            seq += k
            self._cpu = time.thread_time()
            t += k * MIC_PERIOD_S
            self._stop.wait(max(0.0, t - time.monotonic()))

    def close(self) -> None:
        """Stop the clock and close our end."""
        self._stop.set()
        self._thread.join(2.0)
        os.close(self._mic)


class TimedBuffer(PlaybackBuffer):
    """The kiosk's own jitter buffer, noting when marked audio went in and came out (and what came out)."""

    def __init__(self, prebuffer_ms: int) -> None:
        super().__init__(prebuffer_ms)
        self.writes: list[tuple[float, int, int]] = []  # (t, reply, delta)
        self.reads: list[tuple[float, bool]] = []  # (t, audible) per device period
        self.handed: list[tuple[float, int, int, int]] = []  # (t, sample offset in output, reply, delta)
        self.output = bytearray()  # everything handed to the device

    def write(self, pcm: bytes, tag: str) -> None:
        """Queue audio (the kiosk's path), then note a marker at its start."""
        super().write(pcm, tag)
        t = time.monotonic()
        head = np.frombuffer(pcm[:12], dtype="<i2")
        if len(head) == 6 and tuple(int(v) for v in head[:4]) == REPLY_MARK:
            self.writes.append((t, int(head[4]), int(head[5])))

    def read(self, n: int) -> tuple[bytes, bool]:
        """Hand a period to the device (the kiosk's path), then note its markers."""
        data, audible = super().read(n)
        t = time.monotonic()
        base = len(self.output) // 2
        self.reads.append((t, audible))
        if audible:
            for off, reply, k in reply_marks(np.frombuffer(data, dtype="<i2")):
                self.handed.append((t, base + off, reply, k))
        self.output += data
        return data, audible


class TimedMicrophone(FileMicrophone):
    """The kiosk's file microphone, noting which period completed each chunk (by the chunk's bytes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.completed_by: dict[bytes, int] = {}  # chunk -> number of the period that completed it

    async def start(self) -> None:
        """Start as the kiosk's microphone does, then watch the conditioning's output."""
        await super().start()
        chunker = self.chunker
        assert chunker is not None

        def completed(chunk: bytes) -> None:
            if any(chunk):  # silence is ambiguous
                # The card's period whose arrival completed the block that completed the chunk.
                self.completed_by[chunk] = chunker.frames_in // PERIOD - 1
                if len(self.completed_by) > 500:  # chunks sent long ago or never (between visits)
                    del self.completed_by[next(iter(self.completed_by))]

        chunker.on_chunk = completed


class ProbeTrace(TraceWriter):
    """A wire trace that keeps timings in memory instead of writing a file.

    The kiosk calls ``write`` just before each WebSocket send and ``write_raw`` just after
    each receive, with ``loop.time()``: the two ends of the kiosk's network path.
    """

    def __init__(self) -> None:  # no file: nothing of TraceWriter's state is used
        self.sends: list[tuple[float, int]] = []  # (t, mic period number of the chunk's last period)
        self.deltas: list[tuple[float, str, int, int]] = []  # (t, item, reply, delta)
        self.speech_started: list[float] = []
        self.truncates: list[tuple[float, str, int]] = []  # (t, item, audio_end_ms)
        self.deletes = 0
        self.mic: TimedMicrophone | None = None  # where chunks without a readable marker come from

    def write(self, t: float, direction: str, event: Event) -> None:
        """An outgoing client event."""
        kind = event.get("type")
        if kind == "input_audio_buffer.append":
            audio = base64.b64decode(event["audio"])
            seq = mic_seq(audio)
            if seq is None and self.mic is not None:
                seq = self.mic.completed_by.pop(audio, None)
            if seq is not None:
                self.sends.append((t, seq))
        elif kind == "conversation.item.truncate":
            self.truncates.append((t, str(event["item_id"]), int(event["audio_end_ms"])))
        elif kind == "conversation.item.delete":
            self.deletes += 1

    def write_raw(self, t: float, direction: str, text: str | bytes) -> None:
        """An incoming frame: only audio deltas and speech starts matter (cheap test before parsing)."""
        s = text.decode() if isinstance(text, bytes) else text
        if '"response.output_audio.delta"' in s:
            data: dict[str, Any] = json.loads(s)
            head = np.frombuffer(base64.b64decode(data["delta"][:16]), dtype="<i2")
            if len(head) == 6 and tuple(int(v) for v in head[:4]) == REPLY_MARK:
                self.deltas.append((t, str(data["item_id"]), int(head[4]), int(head[5])))
        elif '"input_audio_buffer.speech_started"' in s:
            self.speech_started.append(t)

    def close(self) -> None:
        """Nothing to close."""
