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

from kiosk.audio.aec import AEC_RATE, FRAME, Int16Array

# AEC3's output lags its input by this many samples (at 16 kHz, 8 ms: its 64-sample blocks
# behind the 10 ms frames). The quiet path delays by as much, so the two join without a seam;
# tests/test_webrtc_aec.py measures it, and fails if a new library version changes it.
LAG = 128


class WebRtcCanceller:
    """WebRTC AEC3 at :data:`~kiosk.audio.aec.AEC_RATE`, and its quiet path: the same
    high-pass filter (WebRTC's own, alone) and the same delay."""

    def __init__(self, delay_hint_ms: int = 5) -> None:
        import pywebrtc_audio

        self._delay_hint_ms = delay_hint_ms
        self._impl: Any = pywebrtc_audio.EchoCanceller(sample_rate=AEC_RATE, stream_delay_ms=delay_hint_ms)
        self._hpf: Any = pywebrtc_audio.AudioProcessor(sample_rate=AEC_RATE, high_pass_filter=True)
        self._held: Int16Array = np.zeros(LAG, dtype=np.int16)  # the quiet path's delay line
        self._last_frame: Int16Array = np.zeros(FRAME, dtype=np.int16)  # AEC3's newest input frame
        self._after_aec = False

    def process(self, near: Int16Array, far: Int16Array) -> Int16Array:
        """AEC3 over whole frames (the library releases the GIL while it works)."""
        out: Int16Array = np.asarray(self._impl.process(near, far), dtype=np.int16)
        self._last_frame = near[-FRAME:].copy()
        self._after_aec = True
        return out

    def quiet(self, near: Int16Array) -> Int16Array:
        """High-pass filtered and delayed by :data:`LAG`, as AEC3 returns what it does not cancel.

        Coming from AEC3, the delay line starts with what AEC3 still held: the end of its
        last input frame, filtered here together with the new frames. Going back, AEC3
        hands out the 8 ms it held from before the pause once: room sound from a second
        or more ago, at the room's level.
        """
        if self._after_aec:
            filtered = np.asarray(self._hpf.process(np.concatenate([self._last_frame, near])), dtype=np.int16)
            held, filtered = filtered[FRAME - LAG : FRAME], filtered[FRAME:]
        else:
            filtered, held = np.asarray(self._hpf.process(near), dtype=np.int16), self._held
        joined = np.concatenate([held, filtered])
        self._held = joined[-LAG:]
        self._after_aec = False
        out: Int16Array = joined[: len(near)]
        return out

    def reset(self) -> None:
        """Forget what it learned (filters, delay estimate)."""
        self._impl.reset()
        self._hpf.reset()
