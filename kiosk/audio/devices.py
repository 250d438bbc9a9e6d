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
import math
import os
import time
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


@dataclass(frozen=True)
class Level:
    """What one input device heard during the meter."""

    index: int
    name: str
    rms_dbfs: float | None  # None: the device could not be opened or delivered nothing
    peak_dbfs: float | None
    problem: str = ""


def meter(pa: Any, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> list[Level]:
    """Listen on every input device at once for ``seconds``: the one that hears the room (clap,
    speak) shows it. Devices that cannot be opened are listed with why."""
    import numpy as np

    streams: list[tuple[DeviceInfo, Any, list[bytes]]] = []
    levels: list[Level] = []
    for d in list_devices(pa):
        if d.max_input_channels <= 0:
            continue
        try:
            with quiet_stderr():
                stream = pa.open(format=8, channels=1, rate=d.default_rate, input=True,  # 8 = paInt16
                                 input_device_index=d.index, frames_per_buffer=d.default_rate // 100)  # fmt: skip
        except (OSError, ValueError) as exc:
            levels.append(Level(d.index, d.name, None, None, f"cannot open: {exc}"))
            continue
        streams.append((d, stream, []))
    deadline = clock() + seconds
    try:
        while clock() < deadline:
            for _, stream, chunks in streams:
                available = stream.get_read_available()
                if available:
                    chunks.append(stream.read(available, exception_on_overflow=False))
            time.sleep(0.02)  # a CLI reading devices, not the event loop: a short nap is the poll
    finally:
        for _, stream, _ in streams:
            stream.close()
    for d, _, chunks in streams:
        x = np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float64) / 32768.0
        if x.size == 0:
            levels.append(Level(d.index, d.name, None, None, "delivered no audio"))
            continue
        rms, peak = float(np.sqrt(np.mean(x * x))), float(np.max(np.abs(x)))
        levels.append(Level(d.index, d.name, _db(rms), _db(peak)))
    return sorted(levels, key=lambda lv: lv.index)


def _db(value: float) -> float:
    return round(20 * math.log10(value), 1) if value > 0 else -120.0


def meter_table(levels: list[Level]) -> str:
    """The meter's result, the loudest device marked."""
    heard = [lv for lv in levels if lv.rms_dbfs is not None]
    loudest = max(heard, key=lambda lv: lv.rms_dbfs or -120.0).index if heard else None
    lines = [f"{'idx':>3}  {'name':<36} {'rms dBFS':>8} {'peak dBFS':>9}"]
    for lv in levels:
        if lv.rms_dbfs is None:
            lines.append(f"{lv.index:>3}  {lv.name[:36]:<36} {lv.problem}")
            continue
        mark = "  <- loudest" if lv.index == loudest else ""
        lines.append(f"{lv.index:>3}  {lv.name[:36]:<36} {lv.rms_dbfs:>8.1f} {lv.peak_dbfs:>9.1f}{mark}")
    return "\n".join(lines)
