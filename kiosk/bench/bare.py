"""The bare-client baseline: the kiosk's own Realtime client alone, on the stream workload.

What a voice framework's "bare client" does, with the kiosk's code: open a configured
session (:mod:`kiosk.realtime.handshake`: the connection and the session core), ask for the
greeting, receive and decode its audio (then drop it: no speaker), and send the same room
noise the full kiosk's microphone hears, one ``audio.chunk_ms`` chunk at a time on the
loop's clock. No audio devices, no echo stage, no local VAD, no state machine, no store.
The CPU it uses per second of streaming is the floor the whole kiosk is compared with
(``cpu_ratio_full_to_bare``): absolute percentages drift with the machine, the ratio of
two processes measured side by side does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

import numpy as np

from kiosk.audio.pcm import ms_to_bytes
from kiosk.bench import threads
from kiosk.config import Settings
from kiosk.realtime import session as rs
from kiosk.realtime.connection import RealtimeConnection
from kiosk.runtime.compose import realtime_opener
from kiosk.tools.consent import greeting

LIMIT_S = 20.0
NOISE = 100  # the room noise's amplitude, as the full kiosk's card plays it


class BareClient:
    """One session of the kiosk's Realtime client with no kiosk around it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.chunk_ms = settings.audio.chunk_ms
        rng = np.random.default_rng(7)
        n = ms_to_bytes(self.chunk_ms) // 2
        # Two seconds of noise chunks, made before the window (the full kiosk's card makes its
        # noise in a thread whose CPU is not counted either).
        self._noise = [rng.integers(-NOISE, NOISE, n, dtype=np.int16).tobytes() for _ in range(2000 // self.chunk_ms)]
        self.audio_bytes = 0
        self.playing = asyncio.Event()
        self._kick = asyncio.Event()

    async def run(self, seconds: float) -> dict[str, Any]:
        """Stream for ``seconds`` once the greeting's audio arrives; the CPU figures."""
        opened = await realtime_opener(self.settings).open(id_prefix="bare")
        conn, core = opened.conn, opened.core
        core.request_response(greeting(self.settings))
        tasks = [
            asyncio.create_task(self._reader(conn, core)),
            asyncio.create_task(conn.pump(core.drain, self._kick)),  # the kiosk's own sender
            asyncio.create_task(self._microphone(core)),
        ]
        try:
            async with asyncio.timeout(LIMIT_S):
                await self.playing.wait()
            wall0, cpu0, threads0 = time.monotonic(), time.process_time(), threads.thread_cpu()
            await asyncio.sleep(seconds)
            wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
            per_thread = threads.difference(threads.thread_cpu(), threads0)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await conn.close()
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "cpu_percent": 100 * cpu / wall,
            "audio_received_s": self.audio_bytes / ms_to_bytes(1000),
            "thread_cpu_s": per_thread,
        }

    async def _reader(self, conn: RealtimeConnection, core: rs.RealtimeSession) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await conn.recv()
            for eff in core.receive(frame, loop.time()):
                if isinstance(eff, rs.PlayAudio):
                    self.audio_bytes += len(eff.pcm)
                    self.playing.set()
            self._kick.set()

    async def _microphone(self, core: rs.RealtimeSession) -> None:
        """One chunk every ``chunk_ms`` on the loop's clock (no drift: absolute deadlines)."""
        loop = asyncio.get_running_loop()
        period = self.chunk_ms / 1000
        at = loop.time()
        k = 0
        while True:
            at += period
            await asyncio.sleep(max(0.0, at - loop.time()))
            core.append_audio(self._noise[k % len(self._noise)])
            k += 1
            self._kick.set()


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The ``bare`` mode of :mod:`kiosk.bench.duplex` (its work directory holds nothing)."""
    return await BareClient(settings).run(args.seconds)
