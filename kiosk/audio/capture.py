"""Capture conditioning shared by the device adapters: frames in, 24 kHz chunks out.

Device frames (any rate, any channel count) become fixed-size PCM16 24 kHz mono chunks:
channel selection (``mic_channel``) or a downmix, echo removal when an echo remover is
attached (``echo.mode = "aec"``: it works at its own rate, with the block's ADC time),
streaming resampling, input gain, then cutting into ``chunk_ms`` pieces for
``input_audio_buffer.append``. Chunks wait in a
bounded queue; when the consumer falls behind, the oldest chunk is dropped (latency
matters more than stale audio) and the drop is counted and logged, so the device
callback is never blocked.

A device hands over a period (10 ms) at a time; :class:`Gather` collects them on the
device's thread and hands the loop one block per uplink chunk, sent as soon as the period
that completes a chunk arrives. The loop then wakes 25 times a second for the microphone
instead of 100, and the conditioning (resampling, the echo canceller) runs over 40 ms at
once: numpy and soxr cost per call, most of all the first call after the loop slept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from kiosk.audio.pcm import RATE, apply_gain, ms_to_bytes
from kiosk.audio.ports import EchoRemover
from kiosk.audio.resample import Resampler

log = logging.getLogger(__name__)

Deliver = Callable[[bytes, float | None], None]


class Gather:
    """Device periods gathered into blocks that each complete an uplink chunk (device thread).

    ``deliver(block, adc_time)`` gets the block (interleaved PCM16 at the device's rate and
    channel count) and the ADC time of its first frame: typically a call into the event
    loop. A period that completes a chunk (counted in device frames since the start, so
    periods that do not divide a chunk still hand over on time) delivers at once.

    The block's time is the mean of what each of its periods' stamps says about its first
    frame (a stamp minus the frames before it), not the first period's stamp alone: the echo
    canceller's alignment is fitted to these times, and one jittery stamp per chunk instead
    of four measurably cost it interruptions at -10 dB in the booth.
    """

    def __init__(self, rate: int, channels: int, chunk_ms: int, deliver: Deliver) -> None:
        self._chunk_frames = max(1, rate * chunk_ms // 1000)
        self._frame_bytes = 2 * channels
        self._rate = rate
        self._deliver = deliver
        self._buf = bytearray()
        self._t_sum = 0.0
        self._t_n = 0
        self._frames = 0

    def add(self, data: bytes, adc_time: float | None) -> None:
        """One device period (its first frame converted at ``adc_time``)."""
        if adc_time is not None:
            before_in_block = len(self._buf) // self._frame_bytes
            self._t_sum += adc_time - before_in_block / self._rate
            self._t_n += 1
        self._buf += data
        before = self._frames
        self._frames += len(data) // self._frame_bytes
        if self._frames // self._chunk_frames > before // self._chunk_frames:
            block = bytes(self._buf)
            t = self._t_sum / self._t_n if self._t_n else None
            self._buf.clear()
            self._t_sum, self._t_n = 0.0, 0
            self._deliver(block, t)


class CaptureChunker:
    """Turns interleaved PCM16 device frames into a bounded queue of 24 kHz mono chunks."""

    def __init__(
        self,
        rate: int,
        channels: int = 1,
        *,
        chunk_ms: int = 40,
        channel: int = 0,
        downmix: bool = False,
        gain_db: float = 0.0,
        queue_chunks: int = 50,
    ) -> None:
        if not 0 <= channel < channels:
            raise ValueError(f"channel {channel} out of range for {channels} channel(s)")
        self.rate, self.channels = rate, channels
        self._channel, self._downmix, self._gain = channel, downmix, gain_db
        self._resample = Resampler(rate, RATE)
        self.echo: EchoRemover | None = None
        self._chunk_bytes = ms_to_bytes(chunk_ms)
        self._pending = bytearray()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=queue_chunks)
        self.overflows = 0
        self.max_depth = 0  # deepest the queue has been (benchmarks, the jitter test)
        self.blocks = 0  # device blocks fed so far
        self.frames_in = 0  # device frames fed so far (the benchmark names periods by it)
        self.on_chunk: Callable[[bytes], None] | None = None  # sees each chunk as it is completed (benchmarks)

    def cancel_echo(self, remover: EchoRemover) -> None:
        """Run every block through ``remover``; its output (at its rate) is what gets resampled."""
        self.echo = remover
        self._resample = Resampler(remover.rate, RATE)

    def feed(self, frames: bytes, adc_time: float | None = None) -> None:
        """Condition one block of device frames (the first captured at ``adc_time``) and queue
        any complete chunks (loop thread)."""
        self.blocks += 1
        self.frames_in += len(frames) // (2 * self.channels)
        mono = frames  # a mono device's block is used as it is (no copy)
        if self.channels > 1:
            x = np.frombuffer(frames, dtype="<i2")
            # The 2-D view has its own name: numpy 2.x's stubs give x a 1-D shape type.
            by_frame = x[: len(x) - len(x) % self.channels].reshape(-1, self.channels)
            if self._downmix:
                mono = by_frame.mean(axis=1).astype("<i2").tobytes()
            else:
                mono = np.ascontiguousarray(by_frame[:, self._channel]).tobytes()
        if self.echo is not None:
            mono = self.echo.captured(mono, self.rate, adc_time)
        self._pending += apply_gain(self._resample(mono), self._gain)
        while len(self._pending) >= self._chunk_bytes:
            chunk = bytes(self._pending[: self._chunk_bytes])
            del self._pending[: self._chunk_bytes]
            self._put(chunk)

    def _put(self, chunk: bytes) -> None:
        if self.on_chunk is not None:
            self.on_chunk(chunk)
        if self.queue.full():
            self.queue.get_nowait()
            self.overflows += 1
            if self.overflows in (1, 10, 100) or self.overflows % 1000 == 0:
                log.warning(
                    "capture queue overflow (%d chunks dropped so far)",
                    self.overflows,
                    extra={"kiosk": {"event": "capture_overflow", "count": self.overflows}},
                )
        self.queue.put_nowait(chunk)
        self.max_depth = max(self.max_depth, self.queue.qsize())
