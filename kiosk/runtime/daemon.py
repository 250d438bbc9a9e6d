"""``kiosk run``: the daemon on real devices.

Signals: SIGTERM / SIGINT stop it (a visit under way ends, ``KIOSK_EVENT=stop``). SIGHUP
(``systemctl reload kiosk``, the unit's ``ExecReload=``) lets the current visit finish, then
the daemon re-executes itself: the same process id for systemd (``RELOADING=1``, then the
new program's ``READY=1``), the newly installed code and configuration, and no visitor
cut off mid-sentence by an update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk import conversation as cv
from kiosk.config import AudioSettings, Settings
from kiosk.errors import DeviceError
from kiosk.fleet.link import LinkHealth
from kiosk.leads.records import utc_now
from kiosk.leads.store import Store
from kiosk.leads.sync import Syncer
from kiosk.logs import event
from kiosk.panel.ports import KeyboardButton, Lights, LogLights
from kiosk.realtime.connection import TraceWriter
from kiosk.runtime.compose import build_kiosk
from kiosk.runtime.fleet import FleetDuties, Probes
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
NOT_IN_A_VISIT = {cv.State.IDLE, cv.State.OFFLINE, cv.State.UNAVAILABLE, cv.State.ERROR}


class _Stop:
    """Why and when the daemon stops: a signal now, or a reload after the current visit."""

    def __init__(self, notifier: Notifier) -> None:
        self.event = asyncio.Event()
        self.reload = asyncio.Event()
        self.reason = "signal"
        self._notifier = notifier
        self._term = threading.Event()  # set from the signal handler, taken on the loop
        self._hup = threading.Event()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGTERM / SIGINT stop now, SIGHUP after the visit; never lost.

        asyncio delivers signals through its self-pipe, which PortAudio's callbacks also write
        to many times a second; a full pipe silently drops a signal ("signal wakeup fd:
        BlockingIOError"). So each handler also raises a flag that :meth:`watch` polls.
        """
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, frame: self._raised(loop, signum))

    def _raised(self, loop: asyncio.AbstractEventLoop, signum: int) -> None:
        flag = self._hup if signum == signal.SIGHUP else self._term
        flag.set()
        with contextlib.suppress(RuntimeError):  # the loop has closed: the flag is enough
            loop.call_soon_threadsafe(self._take)

    def _take(self) -> None:
        if self._term.is_set() and not self.event.is_set():
            self.now()
        if self._hup.is_set():
            self._hup.clear()
            self.after_visit()

    async def watch(self) -> None:
        """Take raised flags within a fraction of a second, however the signal arrived."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_POLL_S):
                    await self.event.wait()
            if self.event.is_set():
                return
            self._take()

    def now(self) -> None:
        self.reason = "signal"
        self._notifier.stopping()
        self.event.set()

    def after_visit(self) -> None:
        if not self.reload.is_set():
            log.info("reload requested: restarting once the current visit is over", extra=event("reload"))
            self._notifier.status("restarting after the current visit")
        self.reload.set()

    async def reload_when_free(self, kiosk: Kiosk) -> None:
        """On SIGHUP: wait until no visit is under way, then stop for a re-execution."""
        await self.reload.wait()
        await kiosk.wait_state(NOT_IN_A_VISIT, limit_s=None)
        if not self.event.is_set():
            self.reason = "reload"
            self.event.set()


def run_daemon(settings: Settings, *, no_gpio: bool, trace: Path | None) -> int:
    """Build the real adapters and run until SIGTERM/SIGINT; returns the exit status.

    After SIGHUP it does not return: the process re-executes itself once the visit is over.
    """
    code, reload = asyncio.run(_main(settings, no_gpio, trace))
    if reload:
        Notifier().reloading()
        logging.shutdown()  # flush what the old program logged
        os.execv(sys.executable, sys.orig_argv)
    return code


async def _main(settings: Settings, no_gpio: bool, trace: Path | None) -> tuple[int, bool]:
    loop = asyncio.get_running_loop()
    notifier = Notifier()
    stopper = _Stop(notifier)
    stopper.install(loop)
    # Not a TaskGroup: a ConfigError from start-up must reach the CLI as itself (exit 78),
    # not wrapped in an ExceptionGroup.
    watcher = asyncio.create_task(stopper.watch(), name="signals")
    try:
        return await _kiosk(settings, no_gpio, trace, stopper, notifier)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _kiosk(
    settings: Settings, no_gpio: bool, trace: Path | None, stopper: _Stop, notifier: Notifier
) -> tuple[int, bool]:
    from kiosk.audio.devices import wait_for_devices

    loop = asyncio.get_running_loop()
    stop = stopper.event
    status = StatusFile(settings.service.status_file)
    status.started()
    logging.getLogger().addHandler(StatusLogHandler(status))
    panel = None if no_gpio else await _wait_for_panel(settings, stop, notifier, status)
    if stop.is_set():
        return _stopped_early(status, stopper, "its panel was free")
    store = Store.open_verified(settings.store.path)  # damaged: exit 69 with how to recover
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
        return _stopped_early(status, stopper, "its audio devices appeared")
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
        fleet = _fleet(settings, kiosk, monitor, status, syncer)
        try:
            await _serve(kiosk, monitor, fleet, notifier, stopper)
        finally:
            await fleet.close()
            fleet.store.close()
        code = 1 if kiosk.state is cv.State.ERROR else 0
        log.info("kiosk stopped (%s)", stopper.reason, extra=event("stop", reason=stopper.reason, code=code))
        return code, stopper.reason == "reload"
    finally:
        syncer.close()
        store.close()
        pa.terminate()


def _stopped_early(status: StatusFile, stopper: _Stop, before: str) -> tuple[int, bool]:
    status.update(state="stopped")
    why = stopper.reason
    log.info("kiosk stopped (%s) before %s", why, before, extra=event("stop", reason=why))
    return 0, why == "reload"


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
        extra=_LinkStatus(kiosk.visits.link),
    )


class _LinkStatus:
    """The Realtime link's health for the status file (``kiosk status``), with a wall-clock
    "down since" for humans, fixed when the outage began so the file is not rewritten each tick."""

    def __init__(self, link: LinkHealth) -> None:
        self.link = link
        self.since: str | None = None

    def __call__(self) -> dict[str, Any]:
        if self.link.up:
            self.since = None
        elif self.since is None:
            self.since = utc_now()
        return {"link_up": self.link.up, "link_down_since": self.since, "link_failures": self.link.failures}


def _fleet(
    settings: Settings, kiosk: Kiosk, monitor: ServiceMonitor, status: StatusFile, syncer: Syncer
) -> FleetDuties:
    """Metrics, heartbeat and daily stats, on a connection of their own."""
    mic, speaker, watchdog = kiosk.p.mic, kiosk.p.speaker, monitor.watchdog
    probes = Probes(
        state=lambda: kiosk.state.value,
        link=kiosk.visits.link,
        underruns=lambda: int(getattr(getattr(speaker, "buffer", None), "underruns", 0)),
        overflows=lambda: int(getattr(mic, "overflows", 0)),
        watchdog_pings=lambda: watchdog.pings if watchdog is not None else 0,
        last_error=lambda: (status.data.get("last_error"), status.data.get("last_error_at")),
    )
    return FleetDuties(
        settings,
        Store(settings.store.path),
        probes,
        today=kiosk.p.today,
        sync_on=not syncer.problems(),
        kick=syncer.kick,
    )


async def _serve(
    kiosk: Kiosk, monitor: ServiceMonitor, fleet: FleetDuties, notifier: Notifier, stopper: _Stop
) -> None:
    """Run the kiosk; READY=1 once devices and store are up, then the service monitor and fleet duties."""
    stop = stopper.event
    up = asyncio.Event()

    def ready() -> None:
        log.info("kiosk ready", extra={"kiosk": {"event": "ready"}})
        notifier.ready("idle")
        up.set()

    async def service() -> None:
        await up.wait()  # the probes only count once the streams are open
        fleet_task = asyncio.create_task(fleet.run(), name="fleet")
        try:
            await monitor.run(stop)
        finally:
            fleet_task.cancel()
            await asyncio.gather(fleet_task, return_exceptions=True)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(service(), name="service")
        reload = tg.create_task(stopper.reload_when_free(kiosk), name="reload")
        await kiosk.run(stop, ready=ready)
        stop.set()
        reload.cancel()
