"""``kiosk run``: the daemon on real devices."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk import conversation as cv
from kiosk.config import AudioSettings, Settings
from kiosk.errors import DeviceError
from kiosk.leads.store import Store
from kiosk.leads.sync import Syncer
from kiosk.logs import event
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

STOP_POLL_S = 0.2


def _on_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, notifier: Notifier) -> threading.Event:
    """SIGTERM and SIGINT stop the kiosk, always.

    asyncio delivers signals through its self-pipe; PortAudio's callbacks write to the same
    pipe many times a second, and a full pipe silently drops a signal ("signal wakeup fd:
    BlockingIOError"). So the handler also sets a flag that a watcher on the loop polls.
    """
    requested = threading.Event()

    def handler(signum: int, frame: object) -> None:
        requested.set()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return requested


async def _watch_stop(requested: threading.Event, stop: asyncio.Event, notifier: Notifier) -> None:
    """Turn a stop signal into ``stop`` within a fraction of a second, however it arrived."""
    while not requested.is_set() and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_POLL_S):
                await stop.wait()
    notifier.stopping()
    stop.set()


def run_daemon(settings: Settings, *, no_gpio: bool, trace: Path | None) -> int:
    """Build the real adapters and run until SIGTERM/SIGINT; returns the exit status."""
    return asyncio.run(_main(settings, no_gpio, trace))


async def _main(settings: Settings, no_gpio: bool, trace: Path | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    notifier = Notifier()
    requested = _on_stop_signals(loop, stop, notifier)
    # Not a TaskGroup: a ConfigError from start-up must reach the CLI as itself (exit 78),
    # not wrapped in an ExceptionGroup.
    watcher = asyncio.create_task(_watch_stop(requested, stop, notifier), name="stop-signals")
    try:
        return await _kiosk(settings, no_gpio, trace, stop, notifier)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _kiosk(settings: Settings, no_gpio: bool, trace: Path | None, stop: asyncio.Event, notifier: Notifier) -> int:
    from kiosk.audio.devices import wait_for_devices

    loop = asyncio.get_running_loop()

    status = StatusFile(settings.service.status_file)
    status.started()
    logging.getLogger().addHandler(StatusLogHandler(status))
    panel = None if no_gpio else await _wait_for_panel(settings, stop, notifier, status)
    if stop.is_set():
        status.update(state="stopped")
        return 0
    store = Store(settings.store.path)
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
        elif KeyboardButton(kiosk.submit).attach(loop):
            print("kiosk: press Enter to start or end a visit, 'h' + Enter for a long press", flush=True)
        else:
            log.warning("no GPIO and no terminal: nothing can start a visit (kiosk run --no-gpio in a terminal)")

        monitor = _monitor(settings, notifier, status, kiosk, syncer)
        await _serve(kiosk, monitor, notifier, stop)
        if kiosk.state is cv.State.ERROR:
            return 1
        return 0
    finally:
        syncer.close()
        store.close()
        pa.terminate()


async def _wait_for_panel(settings: Settings, stop: asyncio.Event, notifier: Notifier, status: StatusFile) -> Any:
    """The GPIO panel; a pin held by another program is waited for (one line, then quiet).

    A panel that cannot work here at all (no GPIO, a wrong pin) is a ConfigError: exit 78,
    which the unit does not restart.
    """
    from kiosk.panel.gpio import open_panel

    said = ""
    while not stop.is_set():
        try:
            # Lights work from the start; presses before the kiosk exists (while waiting for
            # audio devices) are ignored, and the button is attached once the kiosk is built.
            return open_panel(settings.panel, lambda inp: None)
        except DeviceError as exc:
            if str(exc) != said:
                said = str(exc)
                log.error("%s; trying again every %.0f s", exc, settings.audio.device_retry_s,
                          extra=event("gpio_unavailable"))  # fmt: skip
                notifier.status(f"waiting for GPIO: {exc}")
                status.update(state="waiting_for_gpio", last_error=str(exc))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.audio.device_retry_s):
                await stop.wait()
    return None


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
