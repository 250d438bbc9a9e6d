"""Streaming resamplers (soxr), for devices that will not open at 24 kHz and the LED VAD.

soxr's ``ResampleStream`` keeps filter state between chunks, so a stream of chunks comes
out as one continuous signal. ``QQ`` ("quick") is the low-latency quality meant for live
audio; its pass band still covers speech comfortably.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr


class Resampler:
    """PCM16 mono ``src`` Hz -> ``dst`` Hz, chunk by chunk; a no-op when the rates match."""

    def __init__(self, src: int, dst: int, quality: str = "QQ") -> None:
        self.src, self.dst, self.quality = src, dst, quality
        self._stream: Any = soxr.ResampleStream(src, dst, 1, dtype="int16", quality=quality) if src != dst else None

    def __call__(self, pcm: bytes) -> bytes:
        """Resample one chunk (output length varies slightly chunk to chunk)."""
        if self._stream is None or not pcm:
            return pcm
        out = self._stream.resample_chunk(np.frombuffer(pcm, dtype="<i2"))
        data: bytes = np.asarray(out, dtype="<i2").tobytes()
        return data

    def drain(self) -> bytes:
        """The tail still inside the filter (end of a reply); the stream starts afresh after."""
        if self._stream is None:
            return b""
        out = self._stream.resample_chunk(np.zeros(0, dtype="<i2"), last=True)
        data: bytes = np.asarray(out, dtype="<i2").tobytes()
        self.reset()
        return data

    def reset(self) -> None:
        """Drop filter state (after a flush: the next audio is unrelated to the last)."""
        if self._stream is not None:
            self._stream.clear()
