"""An energy-based voice activity detector standing in for the service's server VAD.

It works on audio time (milliseconds of audio appended), not on wall time, so a test that
feeds audio faster than real time sees exactly the same events.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.audio.pcm import BYTES_PER_MS, rms_dbfs

FRAME_MS = 10
START_FRAMES = 3  # 30 ms of voice before we call it speech: clicks are not speech


def threshold_dbfs(threshold: float) -> float:
    """Map the API's 0..1 VAD threshold onto a level: 0.5 -> -40 dBFS."""
    return -60.0 + 40.0 * threshold


@dataclass(frozen=True)
class VadEvent:
    """``started`` with the speech start (minus padding), or not with the speech end."""

    started: bool
    at_ms: int


class EnergyVad:
    """Feed appended audio; get speech start/stop events in audio milliseconds."""

    def __init__(self, threshold: float = 0.5, prefix_padding_ms: int = 300, silence_duration_ms: int = 500) -> None:
        self.level = threshold_dbfs(threshold)
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self._buf = b""
        self.pos_ms = 0  # audio time consumed so far
        self.speaking = False
        self._voiced_run = 0
        self._silent_ms = 0
        self._last_voice_end = 0

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Consume audio; return the events it completes."""
        self._buf += pcm
        frame = FRAME_MS * BYTES_PER_MS
        out: list[VadEvent] = []
        while len(self._buf) >= frame:
            f, self._buf = self._buf[:frame], self._buf[frame:]
            voiced = rms_dbfs(f) > self.level
            self.pos_ms += FRAME_MS
            if not self.speaking:
                self._voiced_run = self._voiced_run + 1 if voiced else 0
                if self._voiced_run >= START_FRAMES:
                    self.speaking = True
                    self._silent_ms = 0
                    start = self.pos_ms - START_FRAMES * FRAME_MS
                    out.append(VadEvent(True, max(0, start - self.prefix_padding_ms)))
            elif voiced:
                self._silent_ms = 0
                self._last_voice_end = self.pos_ms
            else:
                self._silent_ms += FRAME_MS
                if self._silent_ms >= self.silence_duration_ms:
                    self.speaking = False
                    self._voiced_run = 0
                    out.append(VadEvent(False, self._last_voice_end))
        return out


class WebRtcStartVad:
    """The second stand-in for the server's VAD: webrtcvad, "8 of the last 10 frames".

    Mode 3 on 30 ms frames of a 16 kHz copy; speech starts when 8 of the last 10 frames
    are voiced and ends when at most one is. ``feed`` returns the audio times (ms) at which
    speech was detected as starting.
    """

    def __init__(self, mode: int = 3, frame_ms: int = 30, voiced: int = 8, window: int = 10) -> None:
        import webrtcvad

        from kiosk.audio.resample import Resampler

        self._vad = webrtcvad.Vad(mode)
        self._to16k = Resampler(24000, 16000)
        self._frame = 16 * frame_ms * 2
        self._frame_ms, self._voiced, self._window = frame_ms, voiced, window
        self._ring: list[bool] = []
        self._buf = b""
        self.pos_ms = 0
        self.speaking = False

    def feed(self, pcm24k: bytes) -> list[int]:
        """Consume 24 kHz audio; the detection times of the speech starts it completes."""
        self._buf += self._to16k(pcm24k)
        starts = []
        while len(self._buf) >= self._frame:
            frame, self._buf = self._buf[: self._frame], self._buf[self._frame :]
            self.pos_ms += self._frame_ms
            self._ring = [*self._ring[-(self._window - 1) :], self._vad.is_speech(frame, 16000)]
            if not self.speaking and sum(self._ring) >= self._voiced:
                self.speaking = True
                starts.append(self.pos_ms)
            elif self.speaking and sum(self._ring) <= 1:
                self.speaking = False
        return starts
