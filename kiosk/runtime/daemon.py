"""``kiosk run``: the daemon on real devices."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk import conversation as cv
from kiosk.config import AudioSettings, Settings
from kiosk.leads.store import Store
from kiosk.leads.sync import Syncer
from kiosk.panel.ports import KeyboardButton, Lights, LogLights
from kiosk.realtime.connection import TraceWriter
from kiosk.runtime.compose import build_kiosk
from kiosk.runtime.kiosk import Kiosk
from kiosk.runtime.systemd import (
    Notifier,
    ServiceMonitor,
    StatusFile,
    StatusLogHandler,
    Watchdog,
    tick_for,
    watchdog_period_s,
)

if TYPE_CHECKING:
    from kiosk.audio.devices import Devices
    from kiosk.audio.pyaudio_io import PyAudioMicrophone, PyAudioSpeaker

log = logging.getLogger(__name__)


def run_daemon(settings: Settings, *, no_gpio: bool, trace: Path | None) -> int:
    """Build the real adapters and run until SIGTERM/SIGINT; returns the exit status."""
    return asyncio.run(_main(settings, no_gpio, trace))


async def _main(settings: Settings, no_gpio: bool, trace: Path | None) -> int:
    from kiosk.audio.devices import wait_for_devices

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    notifier = Notifier()

    def on_signal() -> None:
        notifier.stopping()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    status = StatusFile(settings.service.status_file)
    status.started()
    logging.getLogger().addHandler(StatusLogHandler(status))
    store = Store(settings.store.path)
    panel = None if no_gpio else _gpio_panel(settings)
    lights: Lights = panel if panel is not None else LogLights()
    log.info("kiosk %s starting", settings.kiosk_id, extra={"kiosk": {"event": "start"}})

    def missing(message: str) -> None:
        lights.show(cv.Pattern.ERROR)
        notifier.status(f"waiting for audio device: {message}")
        status.update(state="waiting_for_audio", last_error=message)

    a = settings.audio
    devices = await wait_for_devices(a, stop, on_missing=missing)
    if devices is None:
        store.close()
        lights.close()
        status.update(state="stopped")
        return 0
    pa = devices.pa
    # The syncer has its own connection: its database work runs in a worker thread.
    syncer = Syncer(
        Store(settings.store.path),
        settings.kiosk_id,
        settings.sync,
        settings.notify,
        settings.retention,
        settings.secrets,
    )
    try:
        mic, speaker = _open_audio(devices, a)
        kiosk = build_kiosk(
            settings,
            store,
            mic,
            speaker,
            lights,
            trace=TraceWriter(trace) if trace else None,
            syncer=syncer,
        )
        if panel is not None:
            panel.attach(kiosk.submit_threadsafe)
        else:
            KeyboardButton(kiosk.submit).attach(loop)
            print("kiosk: press Enter to start or end a session, 'h' + Enter for a long press", flush=True)

        monitor = _monitor(settings, notifier, status, kiosk, syncer)
        await _serve(kiosk, monitor, notifier, stop)
        if kiosk.state is cv.State.ERROR:
            return 1
        return 0
    finally:
        syncer.close()
        store.close()
        pa.terminate()


def _gpio_panel(settings: Settings) -> Any:
    from kiosk.panel.gpio import GpioPanel

    # Lights work from the start; presses before the kiosk exists (while waiting for audio
    # devices) are ignored, and the button is attached to the kiosk once it is built.
    return GpioPanel(settings.panel, lambda inp: None)


def _open_audio(devices: Devices, a: AudioSettings) -> tuple[PyAudioMicrophone, PyAudioSpeaker]:
    from kiosk.audio.pyaudio_io import PyAudioMicrophone, PyAudioSpeaker

    return (
        PyAudioMicrophone.configured(devices.pa, devices.mic, a),
        PyAudioSpeaker.configured(devices.pa, devices.speaker, a),
    )

def _monitor(
    settings: Settings, notifier: Notifier, status: StatusFile, kiosk: Kiosk, syncer: Syncer
) -> ServiceMonitor:
    period = watchdog_period_s(os.environ)
    watchdog = None
    if period is not None:
        # WATCHDOG=1 only while both PortAudio callbacks and the loop's mic pump progress.
        mic, speaker = kiosk.p.mic, kiosk.p.speaker
        probes = {
            "microphone": lambda: int(getattr(mic, "callbacks", 0)),
            "speaker": lambda: int(getattr(speaker, "callbacks", 0)),
            "mic-pump": lambda: kiosk.chunks_pumped,
        }
        watchdog = Watchdog(notifier, probes, stall_s=settings.service.audio_stall_s)
    return ServiceMonitor(
        notifier,
        status,
        lambda: kiosk.state.value,
        syncer.status,
        watchdog,
        tick_s=tick_for(period),
    )


async def _serve(kiosk: Kiosk, monitor: ServiceMonitor, notifier: Notifier, stop: asyncio.Event) -> None:
    """Run the kiosk; READY=1 once devices and store are up, then the service monitor."""
    up = asyncio.Event()

    def ready() -> None:
        log.info("kiosk ready", extra={"kiosk": {"event": "ready"}})
        notifier.ready("idle")
        up.set()

    async def service() -> None:
        await up.wait()  # the probes only count once the streams are open
        await monitor.run(stop)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(service(), name="service")
        await kiosk.run(stop, ready=ready)
        stop.set()
