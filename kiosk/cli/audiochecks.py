"""The self-test's audio rows: the microphone's level, a tone on the speaker, the echo path."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kiosk.cli.results import Result, fail, ok, skip
from kiosk.config import AudioSettings, Settings
from kiosk.errors import DeviceError

if TYPE_CHECKING:
    from kiosk.cli.selftest import Options


async def check_microphone(pa: Any, a: AudioSettings, seconds: float, min_dbfs: float) -> Result:
    """Capture ``seconds`` of audio and report its level; silence (a dead or muted mic) fails."""
    import numpy as np

    from kiosk.audio.pcm import rms_dbfs
    from kiosk.audio.pyaudio_io import PyAudioMicrophone, find_device

    try:
        device = find_device(pa, a.input_device, a.input_index, True)
        mic = PyAudioMicrophone.configured(pa, device, a)
        await mic.start()
    except DeviceError as exc:
        return fail("microphone", str(exc))
    chunks: list[bytes] = []
    wanted = max(1, math.ceil(seconds * 1000 / a.chunk_ms))
    try:
        async with asyncio.timeout(seconds + 5.0):
            while len(chunks) < wanted:
                chunks.append(await mic.read())
    except TimeoutError:
        got_ms = len(chunks) * a.chunk_ms
        return fail("microphone", f"{device.name!r} delivered only {got_ms} ms of audio in {seconds + 5:.0f} s")
    finally:
        await mic.close()
    pcm = b"".join(chunks)
    level = rms_dbfs(pcm)
    peak = float(np.max(np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))))
    peak_db = 20 * math.log10(peak / 32768) if peak > 0 else -120.0
    what = f"{device.name!r}: rms {level:.1f} dBFS, peak {peak_db:.1f} dBFS over {wanted * a.chunk_ms / 1000:.1f} s"
    if level < min_dbfs:
        return fail("microphone", f"{what}: below {min_dbfs:.0f} dBFS (muted, unplugged, or wrong channel?)")
    return ok("microphone", what)


def tone(hz: float, ms: int, dbfs: float = -12.0) -> bytes:
    """A sine test tone, PCM16 24 kHz mono, with 10 ms fades (no clicks)."""
    import numpy as np

    from kiosk.audio.pcm import RATE

    n = RATE * ms // 1000
    t = np.arange(n) / RATE
    x = np.sin(2 * np.pi * hz * t) * (10 ** (dbfs / 20))
    ramp = min(n // 2, RATE // 100)
    if ramp:
        x[:ramp] *= np.linspace(0, 1, ramp)
        x[-ramp:] *= np.linspace(1, 0, ramp)
    out: bytes = (x * 32767).astype("<i2").tobytes()
    return out


async def check_speaker(pa: Any, a: AudioSettings, hz: float, ms: int) -> Result:
    """Play a tone and wait until the device has played it out."""
    from kiosk.audio.pyaudio_io import PyAudioSpeaker, find_device

    started, finished = asyncio.Event(), asyncio.Event()

    def on_playing(playing: bool) -> None:
        if playing:
            started.set()
        elif started.is_set():
            finished.set()

    try:
        device = find_device(pa, a.output_device, a.output_index, False)
        speaker = PyAudioSpeaker.configured(pa, device, a)
        await speaker.start(on_playing)
    except DeviceError as exc:
        return fail("speaker", str(exc))
    try:
        speaker.write(tone(hz, ms), "selftest")
        speaker.end_of_stream()
        async with asyncio.timeout(ms / 1000 + 5.0):
            await finished.wait()
    except TimeoutError:
        return fail("speaker", f"{device.name!r} did not play the test tone out (device stalled?)")
    finally:
        await speaker.close()
    return ok("speaker", f"{device.name!r}: {hz:.0f} Hz tone, {ms} ms played (listen for it)")




async def check_echo_path(pa: Any, settings: Settings) -> Result:
    """A burst on the speaker through the configured echo path (see :mod:`kiosk.cli.echocheck`)."""
    from kiosk.cli.echocheck import check_echo

    report = await check_echo(pa, settings.audio, settings.echo)
    return (ok if report.ok else fail)("echo", report.line())


async def audio_checks(settings: Settings, opts: Options) -> list[Result]:
    """Microphone, speaker and echo path, on one PortAudio instance."""
    a = settings.audio
    try:
        from kiosk.audio.devices import new_pyaudio

        pa = new_pyaudio()  # without Debian PortAudio's JACK chatter on stderr
    except (ImportError, OSError) as exc:
        why = f"PortAudio unavailable: {exc}"
        return [fail("microphone", why), fail("speaker", why), fail("echo", why)]
    try:
        steps: list[Callable[[], Awaitable[Result]]] = [
            lambda: check_microphone(pa, a, opts.mic_s, opts.min_mic_dbfs),
            lambda: check_speaker(pa, a, opts.tone_hz, opts.tone_ms),
        ]
        results = [await step() for step in steps]
        if opts.skip_echo:
            results.append(skip("echo", "--skip-echo"))
        elif any(r.status == "FAIL" for r in results):
            results.append(skip("echo", "needs a working microphone and speaker"))
        else:
            results.append(await check_echo_path(pa, settings))
        return results
    finally:
        pa.terminate()
