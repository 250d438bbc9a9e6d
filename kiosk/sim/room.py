"""The test rig's room: the speaker's sound comes back into the microphone through a booth.

The room is :class:`kiosk.sim.booth.BoothEcho` run as a stream: everything the rig's
speaker hands on (silence included, so the timeline stays continuous) is played into it by
``tap``; the microphone hears the visitor (a ``ScriptedMicrophone``'s utterances, which
:meth:`Room.visitor` places in the booth first) plus the booth's echo and noise.

The speaker runs ahead of the microphone, as a sound card's output does: a chunk is only
captured once the speaker has played ``ahead_ms`` past it (the echo path needs what is
heard to have been played; the echo canceller needs its reference before the echo). Both
run on sample clocks, the time base of the booth's timestamps.
"""

from __future__ import annotations

import asyncio

import numpy as np

from kiosk.audio.files import ScriptedMicrophone
from kiosk.audio.pcm import RATE
from kiosk.sim.booth import BoothEcho, BoothSpec

WAIT_S = 2.0  # a speaker that stops (shutting down) does not hold the microphone longer


class Room:
    """A booth between the rig's speaker and its microphone."""

    def __init__(self, spec: BoothSpec | None = None, *, ahead_ms: float = 30.0) -> None:
        self.spec = spec or BoothSpec()
        self.booth = BoothEcho(self.spec, RATE)
        self.played = bytearray()  # everything the speaker handed on
        self._ahead = ahead_ms / 1000
        self._more = asyncio.Event()

    def tap(self, pcm: bytes, rate: int, dac_time: float | None) -> None:
        """The speaker handed ``pcm`` on (a reference sink; the rig's speaker runs on the loop)."""
        assert rate == RATE
        self.played += pcm
        self.booth.play(np.frombuffer(pcm, dtype="<i2"))
        self._more.set()

    def visitor(self, pcm: bytes, level_db: float) -> bytes:
        """A visitor's dry speech as the microphone will hear it: ``level_db`` against the echo."""
        wet = self.booth.visitor(np.frombuffer(pcm, dtype="<i2"), level_db)
        out: bytes = np.clip(np.rint(wet), -32768, 32767).astype("<i2").tobytes()
        return out

    async def hear(self, n: int) -> np.ndarray:
        """The booth's next ``n`` microphone samples, once the speaker has played far enough."""
        want = max(self.booth.needed(n), int((self.booth.capture_time(self.booth.heard + n) + self._ahead) * RATE))
        try:
            async with asyncio.timeout(WAIT_S):
                while self.booth.played < want:
                    self._more.clear()
                    await self._more.wait()
        except TimeoutError:
            pass  # the speaker stopped: hear what there is
        return self.booth.hear(n)


class RoomMicrophone(ScriptedMicrophone):
    """A scripted visitor in a room with echo."""

    def __init__(self, room: Room, chunk_ms: int = 40, speed: float = 1.0) -> None:
        super().__init__(chunk_ms, speed)
        self.room = room

    def capture_time(self, sample: int) -> float:
        """The booth's capture clock (it drifts and jumps, as a real card's does)."""
        return self.room.booth.capture_time(sample)

    async def capture(self) -> bytes:
        """The visitor's chunk plus the room's echo and noise."""
        chunk = await super().capture()
        echo = await self.room.hear(len(chunk) // 2)
        mix = np.frombuffer(chunk, dtype="<i2").astype(np.float64) + echo
        out: bytes = np.clip(np.rint(mix), -32768, 32767).astype("<i2").tobytes()
        return out
