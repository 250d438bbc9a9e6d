"""File-backed audio adapters: the demo, the tests and the benchmarks use these.

``ScriptedMicrophone`` produces silence in real-time-paced chunks and plays utterances
(WAV files) into the stream when told to, like a visitor speaking. ``WavSpeaker`` pulls
periods from the shared jitter buffer at a real-time pace and writes them to a WAV file.
``speed`` > 1 runs both faster than real time (same audio, less waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from pathlib import Path

from kiosk.audio.pcm import RATE, ms_to_bytes, write_wav
from kiosk.audio.playback import PlaybackBuffer
from kiosk.audio.ports import PlayingListener


class ScriptedMicrophone:
    """Silence, with utterances mixed in on request; paced in (scaled) real time."""

    def __init__(self, chunk_ms: int = 40, speed: float = 1.0) -> None:
        self.chunk_ms = chunk_ms
        self._chunk = ms_to_bytes(chunk_ms)
        self._period = chunk_ms / 1000.0 / speed
        self._pending: deque[bytes] = deque()
        self._next: float | None = None
        self._speaking_done: asyncio.Event | None = None
        self.sent_ms = 0.0

    async def start(self) -> None:
        """Begin pacing from now."""
        self._next = asyncio.get_running_loop().time()

    def say(self, pcm: bytes) -> asyncio.Event:
        """Speak ``pcm`` next; the returned event is set once all of it has been read."""
        pcm = pcm + bytes(-len(pcm) % self._chunk)
        self._pending.extend(pcm[i : i + self._chunk] for i in range(0, len(pcm), self._chunk))
        self._speaking_done = asyncio.Event()
        return self._speaking_done

    @property
    def speaking(self) -> bool:
        """True while an utterance is still being read."""
        return bool(self._pending)

    async def read(self) -> bytes:
        """Next chunk, at the paced time."""
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.time()
        delay = self._next - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next += self._period
        self.sent_ms += self.chunk_ms
        if self._pending:
            chunk = self._pending.popleft()
            if not self._pending and self._speaking_done is not None:
                self._speaking_done.set()
            return chunk
        return bytes(self._chunk)

    async def close(self) -> None:
        """Nothing to release."""


class WavSpeaker:
    """A speaker that plays into a WAV file at a (scaled) real-time pace."""

    def __init__(
        self,
        path: Path | None,
        prebuffer_ms: int = 60,
        period_ms: int = 20,
        speed: float = 1.0,
        keep_silence: bool = False,
    ) -> None:
        self.path = path
        self.buffer = PlaybackBuffer(prebuffer_ms)
        self._n = ms_to_bytes(period_ms)
        self._period = period_ms / 1000.0 / speed
        self._keep_silence = keep_silence
        self._out = bytearray()
        self._task: asyncio.Task[None] | None = None
        self._listener: PlayingListener = lambda playing: None
        self._playing = False

    async def start(self, on_playing: PlayingListener) -> None:
        """Start the pacing task."""
        self._listener = on_playing
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wav-speaker")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        while True:
            data, audible = self.buffer.read(self._n)
            if audible or self._keep_silence:
                self._out += data
            if audible != self._playing:
                self._playing = audible
                self._listener(audible)
            nxt += self._period
            await asyncio.sleep(max(0.0, nxt - loop.time()))

    def write(self, pcm: bytes, tag: str) -> None:
        """Queue audio."""
        self.buffer.write(pcm, tag)

    def end_of_stream(self) -> None:
        """Play out what is queued."""
        self.buffer.end_of_stream()

    def flush(self) -> dict[str, float]:
        """Barge-in: drop queued audio."""
        return self.buffer.flush()

    def played_ms(self, tag: str) -> float:
        """No device latency: what was consumed was written."""
        return self.buffer.played_ms(tag)

    def level_dbfs(self) -> float:
        """Level of the last period played."""
        return self.buffer.level_dbfs

    def forget(self) -> None:
        """Drop per-item counters."""
        self.buffer.forget()

    @property
    def audio(self) -> bytes:
        """Everything played so far."""
        return bytes(self._out)

    async def close(self) -> None:
        """Stop and write the WAV file."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.path is not None:
            write_wav(self.path, bytes(self._out), RATE)
