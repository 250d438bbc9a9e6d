"""Capture conditioning shared by the device adapters: frames in, 24 kHz chunks out.

Device frames (any rate, any channel count) become fixed-size PCM16 24 kHz mono chunks:
channel selection (``mic_channel``) or a downmix, streaming resampling, input gain, then
cutting into ``chunk_ms`` pieces for ``input_audio_buffer.append``. Chunks wait in a
bounded queue; when the consumer falls behind, the oldest chunk is dropped (latency
matters more than stale audio) and the drop is counted and logged, so the device
callback is never blocked.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from kiosk.audio.pcm import RATE, apply_gain, ms_to_bytes
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
        self._chunk_bytes = ms_to_bytes(chunk_ms)
        self._pending = bytearray()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=queue_chunks)
        self.overflows = 0
        self.max_depth = 0  # deepest the queue has been (benchmarks, the jitter test)

    def feed(self, frames: bytes) -> None:
        """Condition one block of device frames and queue any complete chunks (loop thread)."""
        x = np.frombuffer(frames, dtype="<i2")
        if self.channels > 1:
            # The 2-D view has its own name: numpy 2.x's stubs give x a 1-D shape type.
            by_frame = x[: len(x) - len(x) % self.channels].reshape(-1, self.channels)
            if self._downmix:
                x = by_frame.mean(axis=1).astype("<i2")
            else:
                x = np.ascontiguousarray(by_frame[:, self._channel])
        self._pending += apply_gain(self._resample(x.tobytes()), self._gain)
        while len(self._pending) >= self._chunk_bytes:
            chunk = bytes(self._pending[: self._chunk_bytes])
            del self._pending[: self._chunk_bytes]
            self._put(chunk)

    def _put(self, chunk: bytes) -> None:
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
