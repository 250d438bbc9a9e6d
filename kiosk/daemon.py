"""``kiosk run``: the daemon on real devices."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from kiosk import conversation as cv
from kiosk.app import Kiosk, Parts, default_tools, load_instructions, read_message
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
    from kiosk.audio.devices import wait_for_devices
    from kiosk.audio.pyaudio_io import PyAudioMicrophone, PyAudioSpeaker

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    notifier = Notifier()

    def on_signal() -> None:
        notifier.stopping()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    store = Store(settings.store.path)
    tools = default_tools(settings.tools.timeout_s, settings)
    lights: Lights = LogLights()
    panel: Any = None
    if not no_gpio:
        from kiosk.gpio import GpioPanel

        # Lights work from the start; presses before the kiosk exists (while waiting for
        # audio devices) are ignored, and the button is attached to the kiosk below.
        panel = GpioPanel(settings.panel, lambda inp: None)
        lights = panel
    log.info("kiosk %s starting", settings.kiosk_id, extra={"kiosk": {"event": "start"}})

    def missing(message: str) -> None:
        lights.show(cv.Pattern.ERROR)
        notifier.status(f"waiting for audio device: {message}")

    a = settings.audio
    devices = await wait_for_devices(a, stop, on_missing=missing)
    if devices is None:
        store.close()
        lights.close()
        return 0
    pa = devices.pa
    try:
        mic = PyAudioMicrophone(
            pa,
            devices.mic,
            chunk_ms=a.chunk_ms,
            channel=a.mic_channel,
            downmix=a.downmix,
            gain_db=a.input_gain_db,
            queue_chunks=a.capture_queue_chunks,
            rate=a.input_rate,
            period_ms=a.period_ms,
        )
        speaker = PyAudioSpeaker(
            pa, devices.speaker, prebuffer_ms=a.prebuffer_ms, period_ms=a.period_ms, rate=a.output_rate
        )
        parts = Parts(
            settings=settings,
            store=store,
            tools=tools,
            mic=mic,
            speaker=speaker,
            lights=lights,
            instructions=load_instructions(settings),
            offline_audio=read_message(settings.session.offline_message),
            unavailable_audio=read_message(settings.session.unavailable_message),
            trace=TraceWriter(trace) if trace else None,
        )
        kiosk = Kiosk(parts)
        if panel is not None:
            panel.attach(kiosk.submit_threadsafe)
        else:
            KeyboardButton(kiosk.submit).attach(loop)
            print("kiosk: press Enter to start or end a session, 'h' + Enter for a long press", flush=True)

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
