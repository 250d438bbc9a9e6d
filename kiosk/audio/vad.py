"""The local voice detector: webrtcvad on a 16 kHz copy, for the 'visitor speaking' light.

It never takes part in turn-taking (the server's VAD does that); it only makes the light
respond instantly. webrtcvad accepts 8/16/32/48 kHz and 10/20/30 ms frames, so the 24 kHz
capture is resampled to 16 kHz here. A hangover keeps the light on across short pauses.
"""

from __future__ import annotations

import webrtcvad

from kiosk.audio.pcm import bytes_to_ms
from kiosk.audio.resample import Resampler

VAD_RATE = 16000


class LedVad:
    """Feed 24 kHz chunks; ``feed`` returns True/False when the light should change."""

    def __init__(self, aggressiveness: int = 2, frame_ms: int = 30, hangover_ms: int = 300) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._frame_bytes = VAD_RATE * frame_ms // 1000 * 2
        self._frame_ms = frame_ms
        self._hangover_ms = hangover_ms
        self._to16k = Resampler(24000, VAD_RATE)
        self._pending = b""
        self._quiet_ms = 0.0
        self.active = False

    def reset(self) -> None:
        """Forget the current state (between visits)."""
        self._to16k.reset()
        self._pending = b""
        self._quiet_ms = 0.0
        self.active = False

    def feed(self, pcm24k: bytes) -> bool | None:
        """Consume a chunk; return the new light state when it changes, else None."""
        self._pending += self._to16k(pcm24k)
        changed: bool | None = None
        while len(self._pending) >= self._frame_bytes:
            frame, self._pending = self._pending[: self._frame_bytes], self._pending[self._frame_bytes :]
            if self._vad.is_speech(frame, VAD_RATE):
                self._quiet_ms = 0.0
                if not self.active:
                    self.active = changed = True
            elif self.active:
                self._quiet_ms += bytes_to_ms(len(frame), VAD_RATE)
                if self._quiet_ms >= self._hangover_ms:
                    self.active = False
                    changed = False
        return changed
