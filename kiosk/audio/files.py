"""File-backed audio adapters: the demo, the tests and the benchmarks use these.

``ScriptedMicrophone`` produces silence in real-time-paced chunks and plays utterances
(WAV files) into the stream when told to, like a visitor speaking. ``WavSpeaker`` pulls
periods from the shared jitter buffer at a real-time pace and writes them to a WAV file.
``speed`` > 1 runs both faster than real time (same audio, less waiting).

``FileMicrophone`` and ``RawSpeaker`` behave like devices: a thread of their own reads or
writes a WAV/raw file or a FIFO period by period, exactly where PortAudio's thread would,
and hands over through the same capture conditioning and jitter buffer. On a regular file
they pace themselves; on a FIFO the process at the other end sets the pace.

Timestamps for the echo canceller: the paced threads stamp their blocks with the monotonic
clock (a device without DAC/ADC times); ``ScriptedMicrophone`` and ``WavSpeaker`` run on
their sample count (sample ``n`` is at ``n / 24000`` s), the clock a simulated room uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
import time
import wave
from collections import deque
from pathlib import Path
from typing import BinaryIO

from kiosk.audio.capture import CaptureChunker, Gather
from kiosk.audio.pcm import RATE, ms_to_bytes, write_wav
from kiosk.audio.playback import PlaybackBuffer
from kiosk.audio.ports import EchoRemover, PlayingListener, ReferenceSink
from kiosk.errors import DeviceError


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
        self._conditioning: CaptureChunker | None = None
        self._captured = 0  # samples produced (the sample clock)

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

    def cancel_echo(self, remover: EchoRemover) -> None:
        """Condition every chunk through ``remover`` (the chunks come out a little later)."""
        self._conditioning = CaptureChunker(RATE, chunk_ms=self.chunk_ms, queue_chunks=1000)
        self._conditioning.cancel_echo(remover)

    def capture_time(self, sample: int) -> float:
        """When sample ``sample`` was captured: the sample clock."""
        return sample / RATE

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
        chunk = await self.capture()
        if self._conditioning is None:
            return chunk
        self._conditioning.feed(chunk, self.capture_time(self._captured))
        self._captured += len(chunk) // 2
        queue = self._conditioning.queue
        return queue.get_nowait() if not queue.empty() else bytes(self._chunk)

    async def capture(self) -> bytes:
        """What the microphone picks up for the next chunk: the visitor, if speaking."""
        if self._pending:
            chunk = self._pending.popleft()
            if not self._pending and self._speaking_done is not None:
                self._speaking_done.set()
            return chunk
        return bytes(self._chunk)

    async def close(self) -> None:
        """Nothing to release."""


class BufferedSpeaker:
    """The speaker port's buffer operations for file speakers (no device latency: what
    was consumed was played)."""

    buffer: PlaybackBuffer
    taps: list[ReferenceSink]

    def tap(self, sink: ReferenceSink) -> None:
        """Report every period handed on (silence included) to ``sink``."""
        self.taps.append(sink)

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


class WavSpeaker(BufferedSpeaker):
    """A speaker that plays into a WAV file at a (scaled) real-time pace."""

    def __init__(
        self,
        path: Path | None,
        prebuffer_ms: int = 60,
        period_ms: int = 20,
        speed: float = 1.0,
        keep_silence: bool = False,
        tap: ReferenceSink | None = None,
    ) -> None:
        self.path = path
        self.taps = [tap] if tap is not None else []  # e.g. a simulated room's echo path
        self._handed = 0  # samples handed on: the sample clock
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
            for sink in self.taps:
                sink(data, RATE, self._handed / RATE)
            self._handed += len(data) // 2
            if audible != self._playing:
                self._playing = audible
                self._listener(audible)
            nxt += self._period
            await asyncio.sleep(max(0.0, nxt - loop.time()))

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


def is_fifo(path: Path) -> bool:
    """True when ``path`` is a named pipe."""
    try:
        return stat.S_ISFIFO(path.stat().st_mode)
    except OSError:
        return False


class FileMicrophone:
    """A microphone reading a WAV file, a raw PCM16 file or a FIFO, period by period.

    Raw input is PCM16 mono at ``rate``. A WAV file gives its own rate and channels. After
    the end of the input the microphone hears silence, like a quiet room.
    """

    def __init__(
        self,
        path: Path,
        *,
        chunk_ms: int = 40,
        rate: int = RATE,
        period_ms: int = 10,
        speed: float = 1.0,
        queue_chunks: int = 50,
    ) -> None:
        self.path, self.chunk_ms = path, chunk_ms
        self._rate, self._period_ms, self._speed, self._queue_chunks = rate, period_ms, speed, queue_chunks
        self.chunker: CaptureChunker | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.callbacks = 0  # periods delivered (progress counter, like a device's)
        self._echo: EchoRemover | None = None

    def cancel_echo(self, remover: EchoRemover) -> None:
        """Condition every period through ``remover``."""
        self._echo = remover
        if self.chunker is not None:
            self.chunker.cancel_echo(remover)

    async def start(self) -> None:
        """Open the input (a FIFO waits for its writer) and start the reader thread."""
        loop = asyncio.get_running_loop()
        try:
            src, rate, channels = await asyncio.to_thread(self._open)
        except (OSError, wave.Error, EOFError) as exc:
            raise DeviceError(f"cannot read microphone file {self.path}: {exc}") from None
        self.chunker = CaptureChunker(rate, channels, chunk_ms=self.chunk_ms, queue_chunks=self._queue_chunks)
        if self._echo is not None:
            self.chunker.cancel_echo(self._echo)
        paced = not is_fifo(self.path)
        self._thread = threading.Thread(
            target=self._run, args=(loop, src, rate, channels, paced), name="file-mic", daemon=True
        )
        self._thread.start()

    def _open(self) -> tuple[BinaryIO | wave.Wave_read, int, int]:
        if self.path.suffix.lower() == ".wav" and not is_fifo(self.path):
            w = wave.open(str(self.path), "rb")  # noqa: SIM115 - closed by the reader thread
            if w.getsampwidth() != 2:
                w.close()
                raise wave.Error("only 16-bit PCM WAV files are supported")
            return w, w.getframerate(), w.getnchannels()
        return open(self.path, "rb", buffering=0), self._rate, 1

    def _run(
        self, loop: asyncio.AbstractEventLoop, src: BinaryIO | wave.Wave_read, rate: int, channels: int, paced: bool
    ) -> None:
        frames = max(1, rate * self._period_ms // 1000)
        n = frames * 2 * channels
        period_s = self._period_ms / 1000 / self._speed
        next_at = time.monotonic()
        eof = False
        assert self.chunker is not None
        chunker = self.chunker

        def deliver(block: bytes, adc_time: float | None) -> None:
            loop.call_soon_threadsafe(chunker.feed, block, adc_time)

        gather = Gather(rate, channels, self.chunk_ms, deliver)
        try:
            while not self._stop.is_set():
                data = b""
                if not eof:
                    data = src.readframes(frames) if isinstance(src, wave.Wave_read) else _read_full(src, n)
                    eof = len(data) < n
                data += bytes(n - len(data))
                self.callbacks += 1
                # A device without timestamps: the period just delivered began a period ago.
                gather.add(data, time.monotonic() - period_s)
                if paced or eof:
                    next_at += period_s
                    self._stop.wait(max(0.0, next_at - time.monotonic()))
        except RuntimeError:
            pass  # the loop closed under us: the kiosk is shutting down
        finally:
            src.close()

    async def read(self) -> bytes:
        """The next 24 kHz chunk."""
        if self.chunker is None:
            raise DeviceError("microphone not started")
        return await self.chunker.queue.get()

    async def close(self) -> None:
        """Stop the reader thread."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)


def _read_full(src: BinaryIO, n: int) -> bytes:
    # A FIFO returns what the writer has put in so far; keep reading to a whole period.
    out = b""
    while len(out) < n:
        got = src.read(n - len(out))
        if not got:
            break
        out += got
    return out


class RawSpeaker(BufferedSpeaker):
    """A speaker writing PCM16 mono 24 kHz to a raw file or a FIFO from a thread of its own.

    On a regular file the thread paces itself in (scaled) real time; on a FIFO the reader
    at the other end does, as a sound card would. Silence is written while idle, so the
    output is a continuous timeline.
    """

    def __init__(self, path: Path, *, prebuffer_ms: int = 60, period_ms: int = 10, speed: float = 1.0) -> None:
        self.path = path
        self.buffer = PlaybackBuffer(prebuffer_ms)
        self.taps = []
        self._n = ms_to_bytes(period_ms)
        self._period_s = period_ms / 1000 / speed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: PlayingListener = lambda playing: None
        self.callbacks = 0

    async def start(self, on_playing: PlayingListener) -> None:
        """Open the output (a FIFO waits for its reader) and start the writer thread."""
        self._listener = on_playing
        loop = asyncio.get_running_loop()
        try:
            fd = await asyncio.to_thread(os.open, self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise DeviceError(f"cannot write speaker file {self.path}: {exc}") from None
        self._thread = threading.Thread(target=self._run, args=(loop, fd), name="raw-speaker", daemon=True)
        self._thread.start()

    def _run(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        paced = not is_fifo(self.path)
        next_at = time.monotonic()
        playing = False
        try:
            while not self._stop.is_set():
                data, audible = self.buffer.read(self._n)
                self.callbacks += 1
                if audible != playing:
                    playing = audible
                    loop.call_soon_threadsafe(self._listener, audible)
                for sink in self.taps:
                    # Like a device that holds one period: this one sounds a period from now.
                    sink(data, RATE, time.monotonic() + self._period_s)
                os.write(fd, data)
                if paced:
                    next_at += self._period_s
                    # A plain sleep, not the stop event's timed wait (half the CPU per
                    # period); a stop is seen within a period.
                    time.sleep(max(0.0, next_at - time.monotonic()))
        except (OSError, RuntimeError):
            pass  # reader gone or loop closed: shutting down
        finally:
            os.close(fd)

    async def close(self) -> None:
        """Stop the writer thread."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
