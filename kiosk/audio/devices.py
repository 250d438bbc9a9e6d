"""Finding the audio devices at start-up, and waiting for them when they are not there yet.

USB audio can come up seconds after the kiosk at boot, and a technician may unplug and
re-plug the array. PortAudio enumerates devices only when it initialises, so each retry
starts a fresh PyAudio instance. The first failure is logged once as an error with the
devices that *are* present; the lights show the error pattern while we wait; the moment
the devices appear is logged too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kiosk.audio.pyaudio_io import DeviceInfo, find_device, list_devices
from kiosk.config import AudioSettings
from kiosk.errors import DeviceError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (Debian's PortAudio probes JACK and prints about it)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def new_pyaudio() -> Any:
    """A fresh PyAudio instance (re-enumerates devices), without the JACK noise."""
    import pyaudio

    with quiet_stderr():
        return pyaudio.PyAudio()


@dataclass(frozen=True)
class Devices:
    """The PyAudio instance and the chosen devices."""

    pa: Any
    mic: DeviceInfo
    speaker: DeviceInfo


def choose(pa: Any, audio: AudioSettings) -> Devices:
    """The configured microphone and speaker; DeviceError saying which is missing."""
    return Devices(
        pa,
        find_device(pa, audio.input_device, audio.input_index, True),
        find_device(pa, audio.output_device, audio.output_index, False),
    )


async def wait_for_devices(
    audio: AudioSettings,
    stop: asyncio.Event,
    *,
    on_missing: Callable[[str], None] = lambda message: None,
    pa_factory: Callable[[], Any] = new_pyaudio,
) -> Devices | None:
    """Find both devices, retrying every ``device_retry_s`` until they appear or ``stop``.

    Returns None when stopped first. ``on_missing`` is called once per distinct problem
    (to show the error light).
    """
    last = ""
    while not stop.is_set():
        pa = pa_factory()
        try:
            found = choose(pa, audio)
        except DeviceError as exc:
            pa.terminate()
            message = str(exc)
            if message != last:
                last = message
                log.error(
                    "audio device missing, retrying every %.0f s: %s",
                    audio.device_retry_s,
                    message,
                    extra={"kiosk": {"event": "device_missing", "error": message}},
                )
                on_missing(message)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(audio.device_retry_s):
                    await stop.wait()
            continue
        if last:
            log.info(
                "audio devices found: %r, %r",
                found.mic.name,
                found.speaker.name,
                extra={"kiosk": {"event": "device_found"}},
            )
        return found
    return None


def describe(pa: Any, audio: AudioSettings) -> str:
    """The ``kiosk devices`` table: every device, its channels and accepted rates."""
    try:
        chosen: Devices | None = choose(pa, audio)
    except DeviceError:
        chosen = None
    lines = [f"{'idx':>3}  {'name':<36} {'in':>3} {'out':>3}  {'default':>7}  rates accepted (in / out)"]
    for d in list_devices(pa):
        marks = []
        if chosen is not None and d.index == chosen.mic.index:
            marks.append("<- microphone")
        if chosen is not None and d.index == chosen.speaker.index:
            marks.append("<- speaker")
        ins = ",".join(str(r) for r in d.input_rates) or "-"
        outs = ",".join(str(r) for r in d.output_rates) or "-"
        lines.append(
            f"{d.index:>3}  {d.name[:36]:<36} {d.max_input_channels:>3} {d.max_output_channels:>3}  "
            f"{d.default_rate:>7}  {ins} / {outs}  {' '.join(marks)}".rstrip()
        )
    if chosen is None:
        try:
            choose(pa, audio)
        except DeviceError as exc:
            lines.append(f"configured devices: {exc}")
    return "\n".join(lines)
