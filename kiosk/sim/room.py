"""A simulated room: the speaker's sound leaks back into the microphone.

For testing the echo policy without hardware. Everything the speaker plays (silence
included, so the timeline stays continuous) is recorded by ``tap``; the microphone hears
the visitor (a ``ScriptedMicrophone``) plus that playback, delayed and attenuated the way
a loudspeaker a metre from an array would be.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kiosk.audio.files import ScriptedMicrophone
from kiosk.audio.pcm import ms_to_bytes


class Room:
    """Echo path from speaker to microphone: ``gain_db`` and ``delay_ms``."""

    def __init__(self, gain_db: float = -6.0, delay_ms: int = 30) -> None:
        self.gain = 10 ** (gain_db / 20)
        self.delay = ms_to_bytes(delay_ms)
        self.played = bytearray()

    def tap(self, pcm: bytes) -> None:
        """The speaker handed ``pcm`` to the 'air'."""
        self.played += pcm

    def echo(self, start: int, n: int) -> npt.NDArray[np.float32]:
        """Echo samples (float) for microphone bytes [start, start + n)."""
        lo, hi = start - self.delay, start - self.delay + n
        seg = bytes(self.played[max(0, lo) : max(0, hi)])
        seg = bytes(max(0, -lo) - max(0, -hi)) + seg if lo < 0 else seg
        seg += bytes(n - len(seg))
        return np.frombuffer(seg[:n], dtype="<i2").astype(np.float32) * self.gain


class RoomMicrophone(ScriptedMicrophone):
    """A scripted visitor in a room with echo."""

    def __init__(self, room: Room, chunk_ms: int = 40, speed: float = 1.0) -> None:
        super().__init__(chunk_ms, speed)
        self.room = room
        self._pos = 0

    async def read(self) -> bytes:
        """The visitor's chunk plus the room's echo."""
        chunk = await super().read()
        mix = np.frombuffer(chunk, dtype="<i2").astype(np.float32) + self.room.echo(self._pos, len(chunk))
        self._pos += len(chunk)
        out: bytes = np.clip(mix, -32768, 32767).astype("<i2").tobytes()
        return out
