"""The playback jitter buffer shared by every speaker adapter.

Audio arrives from the network in bursts tagged with its assistant item id; the device
pulls fixed periods from its own thread. The buffer holds a small prebuffer before it
starts (so a late delta does not cause a gap), fills underruns with silence (counted),
keeps per-item counts of what was actually handed to the device (the basis of
truncation), and on flush fades out over at most 10 ms so the cut does not click.

The prebuffer is both an amount and a time: playback starts once ``prebuffer_ms`` of audio
is queued *and* ``prebuffer_ms`` has passed since the first of it arrived. The Realtime
API (and the simulator) deliver a reply faster than real time, so waiting that long costs
no more latency than a real-time amount-based prebuffer would, yet it lets a burst build
up: the first deltas of a reply are the ones network jitter hurts, before any cushion
exists. ``end_of_stream`` starts playback at once whatever is queued.

It is thread-safe: ``write``/``flush`` come from the event loop, ``read`` from the
device callback; a plain lock is held only for list and counter updates.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from kiosk.audio.pcm import RATE, fade_out, rms_dbfs

FADE_MS = 8  # under the 10 ms budget, long enough to avoid an audible click


@dataclass
class _Segment:
    tag: str
    data: bytes
    pos: int = 0


@dataclass(frozen=True)
class PlaybackStats:
    """Counters for ops and benchmarks."""

    underruns: int
    queued_ms: float
    played_ms: float


class PlaybackBuffer:
    """Tagged PCM16 mono jitter buffer (24 kHz unless the device needs another rate)."""

    def __init__(self, prebuffer_ms: int = 60, rate: int = RATE, clock: Callable[[], float] = time.monotonic) -> None:
        self._bpms = rate * 2 / 1000  # bytes per millisecond at this rate
        self._clock = clock
        self._prebuffer_s = prebuffer_ms / 1000
        self._first_at: float | None = None  # arrival of the oldest audio waiting to start
        self._lock = threading.Lock()
        self._segments: deque[_Segment] = deque()
        self._queued = 0
        self._prebuffer = int(prebuffer_ms * self._bpms)
        self._started = False
        self._ending = False
        self._fade: bytes = b""
        self._played: dict[str, int] = {}
        self._played_total = 0
        self.underruns = 0
        self._reply = False  # a reply is under way (started, not yet played out or flushed)
        self.last_tag = ""
        # The last period handed to the device, kept as it is: its level is worked out only
        # when someone asks (the level gate, per chunk on the loop), not per period on the
        # device's thread, where numpy's first call after a sleep costs more than the rest.
        self._last: bytes = b""

    def write(self, pcm: bytes, tag: str) -> None:
        """Queue audio for item ``tag``."""
        if not pcm:
            return
        with self._lock:
            self._segments.append(_Segment(tag, pcm))
            self.last_tag = tag
            self._queued += len(pcm)
            self._ending = False
            if not self._started and self._first_at is None:
                self._first_at = self._clock()

    def end_of_stream(self) -> None:
        """No more audio is coming for now: play out what is queued, even below prebuffer."""
        with self._lock:
            self._ending = True

    def read(self, n: int) -> tuple[bytes, bool]:
        """Take ``n`` bytes for the device; returns (data, playing).

        Silence fills whatever is missing. ``playing`` is True from the start of a reply
        until it has played out after ``end_of_stream`` (or is flushed), underruns
        included, so adapters report 'the assistant is speaking' without flicker.
        """
        with self._lock:
            if self._fade:
                data, self._fade = self._fade[:n], self._fade[n:]
                self._last = data
                return data + bytes(n - len(data)), True
            if not self._started and not self._ready_to_start(n):
                if self._ending and not self._queued:
                    self._reply = False  # the reply ended while we waited for more of it
                self._last = b""
                # Waiting for late audio in the middle of a reply still counts as speaking:
                # only a reply that has played out (or a flush) makes the speaker idle.
                return bytes(n), self._reply
            self._started = True
            self._reply = True
            parts: list[bytes] = []  # mostly one slice of one segment: no copy beyond it
            got = 0
            while got < n and self._segments:
                seg = self._segments[0]
                take = min(n - got, len(seg.data) - seg.pos)
                parts.append(seg.data[seg.pos : seg.pos + take])
                got += take
                seg.pos += take
                self._played[seg.tag] = self._played.get(seg.tag, 0) + take
                if seg.pos >= len(seg.data):
                    self._segments.popleft()
            self._queued -= got
            self._played_total += got
            played = parts[0] if len(parts) == 1 else b"".join(parts)
            self._last = played
            if got < n:
                if not self._ending:
                    # Started and not told the reply is complete: the audio came late.
                    self.underruns += 1
                else:
                    self._reply = False  # played out
                # Dry: back to prebuffering so the next burst starts cleanly.
                self._started = False
                self._first_at = None
            return played + bytes(n - got) if got < n else played, bool(got) or self._reply

    @property
    def level_dbfs(self) -> float:
        """Level of the last period handed to the device (-120 for silence), the echo reference."""
        return rms_dbfs(self._last)

    def _ready_to_start(self, n: int) -> bool:
        if not self._queued or self._first_at is None:
            return False
        if self._ending:
            return True
        # Start at the device read nearest the deadline, not the first one after it: the
        # wait past the prebuffer is then at most half a period instead of a whole one.
        half_period_s = n / self._bpms / 2000
        waited = self._clock() - self._first_at
        return self._queued >= self._prebuffer and waited >= self._prebuffer_s - half_period_s

    def flush(self) -> dict[str, float]:
        """Drop queued audio now, fading the next <=10 ms out.

        Returns, for each item that still had audio queued, the milliseconds of it handed
        to the device (including the fade, which the visitor does hear).
        """
        with self._lock:
            fade_len = min(int(FADE_MS * self._bpms) // 2 * 2, self._queued)
            fade = bytearray()
            cut: dict[str, int] = {}
            for seg in self._segments:
                cut.setdefault(seg.tag, 0)
                if len(fade) < fade_len:
                    take = min(fade_len - len(fade), len(seg.data) - seg.pos)
                    fade += seg.data[seg.pos : seg.pos + take]
                    self._played[seg.tag] = self._played.get(seg.tag, 0) + take
            self._segments.clear()
            self._queued = 0
            self._started = False
            self._first_at = None
            self._reply = False
            self._played_total += len(fade)
            self._fade = fade_out(bytes(fade)) if fade else b""
            return {tag: self._played.get(tag, 0) / self._bpms for tag in cut}

    def played_ms(self, tag: str) -> float:
        """Milliseconds of item ``tag`` handed to the device so far."""
        with self._lock:
            return self._played.get(tag, 0) / self._bpms

    def forget(self) -> None:
        """Drop per-item counters (end of a visit: nothing of theirs is kept)."""
        with self._lock:
            self._played.clear()

    @property
    def busy(self) -> bool:
        """True while audio is queued or fading out."""
        with self._lock:
            return bool(self._queued or self._fade)

    def stats(self) -> PlaybackStats:
        """A snapshot of the counters."""
        with self._lock:
            return PlaybackStats(self.underruns, self._queued / self._bpms, self._played_total / self._bpms)
