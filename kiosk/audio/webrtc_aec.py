"""The echo-canceller port's adapter for WebRTC's AEC3 (``pywebrtc-audio``).

The only module that imports ``pywebrtc_audio``. Its ``EchoCanceller`` runs AEC3 (with its
high-pass filter) over whole 10 ms frames at 16, 32 or 48 kHz; 24 kHz is refused, which is
why the stage runs at 16 kHz. ``stream_delay_ms`` is only the canceller's starting guess
for the echo delay: it finds the delay itself. The stage hands it a reference already
aligned by the devices' timestamps, so the guess is the stage's lead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiosk.audio.aec import AEC_RATE, Int16Array


class WebRtcCanceller:
    """WebRTC AEC3 at :data:`~kiosk.audio.aec.AEC_RATE`."""

    def __init__(self, delay_hint_ms: int = 5) -> None:
        import pywebrtc_audio

        self._delay_hint_ms = delay_hint_ms
        self._impl: Any = pywebrtc_audio.EchoCanceller(sample_rate=AEC_RATE, stream_delay_ms=delay_hint_ms)

    def process(self, near: Int16Array, far: Int16Array) -> Int16Array:
        """AEC3 over whole frames (the library releases the GIL while it works)."""
        out: Int16Array = np.asarray(self._impl.process(near, far), dtype=np.int16)
        return out

    def reset(self) -> None:
        """Forget the echo path (filters, delay estimate)."""
        self._impl.reset()
