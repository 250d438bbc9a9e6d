"""Capture conditioning shared by the device adapters: frames in, 24 kHz chunks out.

Device frames (any rate, any channel count) become fixed-size PCM16 24 kHz mono chunks:
channel selection (``mic_channel``) or a downmix, echo removal when an echo remover is
attached (``echo.mode = "aec"``: it works at its own rate, with the block's ADC time),
streaming resampling, input gain, then cutting into ``chunk_ms`` pieces for
``input_audio_buffer.append``. Chunks wait in a
bounded queue; when the consumer falls behind, the oldest chunk is dropped (latency
matters more than stale audio) and the drop is counted and logged, so the device
callback is never blocked.
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
        self.on_chunk: Callable[[bytes], None] | None = None  # sees each chunk as it is completed (benchmarks)

    def cancel_echo(self, remover: EchoRemover) -> None:
        """Run every block through ``remover``; its output (at its rate) is what gets resampled."""
        self.echo = remover
        self._resample = Resampler(remover.rate, RATE)

    def feed(self, frames: bytes, adc_time: float | None = None) -> None:
        """Condition one block of device frames (the first captured at ``adc_time``) and queue
        any complete chunks (loop thread)."""
        self.blocks += 1
        x = np.frombuffer(frames, dtype="<i2")
        if self.channels > 1:
            # The 2-D view has its own name: numpy 2.x's stubs give x a 1-D shape type.
            by_frame = x[: len(x) - len(x) % self.channels].reshape(-1, self.channels)
            if self._downmix:
                x = by_frame.mean(axis=1).astype("<i2")
            else:
                x = np.ascontiguousarray(by_frame[:, self._channel])
        mono = x.tobytes()
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
