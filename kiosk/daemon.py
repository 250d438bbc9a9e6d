"""``kiosk run``: the daemon on real devices."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from kiosk import conversation as cv
from kiosk.app import Kiosk, Parts, default_tools, load_instructions
from kiosk.config import Settings
from kiosk.panel import KeyboardButton, Lights, LogLights
from kiosk.realtime.connection import TraceWriter
from kiosk.service import Notifier
from kiosk.store import Store

log = logging.getLogger(__name__)


def run_daemon(settings: Settings, *, no_gpio: bool, trace: Path | None) -> int:
    """Build the real adapters and run until SIGTERM/SIGINT; returns the exit status."""
    return asyncio.run(_main(settings, no_gpio, trace))


async def _main(settings: Settings, no_gpio: bool, trace: Path | None) -> int:
    import pyaudio

    from kiosk.audio.pyaudio_io import PyAudioMicrophone, PyAudioSpeaker, find_device

    store = Store(settings.store.path)
    tools = default_tools(settings.tools.timeout_s)
    pa: Any = pyaudio.PyAudio()
    a = settings.audio
    try:
        mic = PyAudioMicrophone(
            pa,
            find_device(pa, a.input_device, a.input_index, True),
            chunk_ms=a.chunk_ms,
            channel=a.mic_channel,
            downmix=a.downmix,
            gain_db=a.input_gain_db,
            queue_chunks=a.capture_queue_chunks,
        )
        speaker = PyAudioSpeaker(
            pa, find_device(pa, a.output_device, a.output_index, False), prebuffer_ms=a.prebuffer_ms
        )
        lights: Lights = LogLights()
        parts = Parts(
            settings=settings,
            store=store,
            tools=tools,
            mic=mic,
            speaker=speaker,
            lights=lights,
            instructions=load_instructions(settings),
            trace=TraceWriter(trace) if trace else None,
        )
        kiosk = Kiosk(parts)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        notifier = Notifier()

        def on_signal() -> None:
            notifier.stopping()
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        if no_gpio:
            KeyboardButton(kiosk.submit).attach(loop)
            print("kiosk: press Enter to start or end a session, 'h' + Enter for a long press", flush=True)
        else:
            from kiosk.gpio import GpioPanel

            panel = GpioPanel(settings.panel, kiosk.submit_threadsafe)
            parts.lights = panel
        log.info("kiosk %s starting", settings.kiosk_id, extra={"kiosk": {"event": "start"}})

        def ready() -> None:
            log.info("kiosk ready", extra={"kiosk": {"event": "ready"}})
            notifier.ready("idle")

        await kiosk.run(stop, ready=ready)
        if kiosk.state is cv.State.ERROR:
            return 1
        return 0
    finally:
        store.close()
        pa.terminate()
