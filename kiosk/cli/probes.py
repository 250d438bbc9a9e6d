"""The self-test's checks, one per part of the kiosk; each returns a row (PASS, FAIL or SKIP) with
what it saw, and never raises for what it checks."""


from __future__ import annotations

import asyncio
import math
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from kiosk.config import AudioSettings, Settings
from kiosk.errors import DeviceError, FatalRealtimeError, RealtimeError, StoreError

Status = Literal["PASS", "FAIL", "SKIP"]


@dataclass(frozen=True)
class Result:
    """One row of the table."""

    name: str
    status: Status
    detail: str


def ok(name: str, detail: str) -> Result:
    """A passed check."""
    return Result(name, "PASS", detail)


def fail(name: str, detail: str) -> Result:
    """A failed check."""
    return Result(name, "FAIL", detail)


def skip(name: str, detail: str) -> Result:
    """A check not run on purpose."""
    return Result(name, "SKIP", detail)


@dataclass(frozen=True)
class Options:
    """How thorough and how patient the self-test is."""

    skip_button: bool = False
    no_gpio: bool = False
    no_audio: bool = False
    skip_echo: bool = False
    mic_s: float = 2.0
    min_mic_dbfs: float = -70.0
    tone_ms: int = 600
    tone_hz: float = 440.0
    light_s: float = 0.5
    button_s: float = 15.0


def check_database(path: Path) -> Result:
    """Open (creating and migrating if needed) and write the database."""
    from kiosk.leads.store import Store

    existed = path.exists()
    try:
        store = Store(path)
    except StoreError as exc:
        return fail("database", str(exc))
    try:
        store.verify()  # damage: the message says how to recover
        with store.transaction() as conn:
            # A real write (the header's user_version), so a read-only file or full disk shows.
            conn.execute(f"PRAGMA user_version={store.schema_version}")
        version = store.schema_version
    except StoreError as exc:
        return fail("database", f"{path}: not writable: {exc}")
    finally:
        store.close()
    if not existed:
        _give_to_directory_owner(path)
    return ok("database", f"{path} writable (schema {version}{', created' if not existed else ''})")


def _give_to_directory_owner(path: Path) -> None:
    # Run as root, a new database would belong to root and the service user could not
    # open it: hand it (and SQLite's side files) to whoever owns the state directory.
    if os.geteuid() != 0:
        return
    st = path.parent.stat()
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if f.exists():
            os.chown(f, st.st_uid, st.st_gid)


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


async def check_panel(settings: Settings, opts: Options, pin_factory: Any, out: TextIO) -> list[Result]:
    """Cycle the lights through every pattern, then wait for a button press."""
    if opts.no_gpio:
        return [skip("lights", "--no-gpio"), skip("button", "--no-gpio")]
    from gpiozero.exc import GPIOZeroError

    from kiosk.conversation import Pattern
    from kiosk.panel.gpio import GpioPanel
    from kiosk.panel.ports import ButtonEvent

    loop = asyncio.get_running_loop()
    pressed = asyncio.Event()
    got: list[ButtonEvent] = []

    def sink(e: ButtonEvent) -> None:
        got.append(e)
        loop.call_soon_threadsafe(pressed.set)

    p = settings.panel
    try:
        panel = GpioPanel(p, sink, pin_factory)
    except (GPIOZeroError, OSError) as exc:
        why = f"GPIO unavailable: {type(exc).__name__}: {exc} (wiring: hardware/wiring.md; no GPIO: --no-gpio)"
        return [fail("lights", why), skip("button", "GPIO unavailable")]
    try:
        try:
            for pattern in Pattern:
                panel.show(pattern)
                await asyncio.sleep(opts.light_s)  # for a human to see each pattern
            panel.show(Pattern.IDLE)
        except (GPIOZeroError, OSError) as exc:
            return [fail("lights", f"{type(exc).__name__}: {exc}"), skip("button", "lights failed")]
        where = f"lamp GPIO{p.lamp_pin}, RGB GPIO{p.status_rgb_pins}"
        lights = ok("lights", f"{len(Pattern)} patterns shown on {where} (check each by eye)")
        if opts.skip_button:
            return [lights, skip("button", "--skip-button")]
        print(f"selftest: press the kiosk button within {opts.button_s:.0f} s ...", file=out, flush=True)
        try:
            async with asyncio.timeout(opts.button_s):
                await pressed.wait()
        except TimeoutError:
            return [lights, fail("button", f"no press on GPIO{p.button_pin} within {opts.button_s:.0f} s")]
        kind = type(got[0]).__name__ if got else "press"
        return [lights, ok("button", f"GPIO{p.button_pin}: {kind} seen")]
    finally:
        panel.close()


async def check_realtime(settings: Settings) -> Result:
    """Connect, authenticate, and have ``session.update`` confirmed by ``session.updated``.

    The session is opened exactly as the daemon opens a visitor's (same opener, same
    configuration with the configured instructions and tools), then closed.
    """
    from kiosk.runtime.compose import realtime_opener

    r = settings.realtime
    where = f"{r.url} model {r.model}"
    if settings.secrets.openai_api_key is None:
        creds = settings.service.credentials_dir
        return fail("realtime", f"no API key: credential openai_api_key missing (installed in {creds}, which "
                                "only root reads: run `sudo kiosk selftest`; or KIOSK_SECRETS__OPENAI_API_KEY)")
    opener = realtime_opener(settings)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    limit = r.connect_timeout_s + 10.0
    try:
        async with asyncio.timeout(limit):
            opened = await opener.open(id_prefix="selftest")
            await opened.conn.close()
    except FatalRealtimeError as exc:
        return fail("realtime", f"{where}: refused: {exc}")
    except RealtimeError as exc:
        return fail("realtime", f"{where}: unreachable: {exc}")
    except TimeoutError:
        return fail("realtime", f"{where}: no session.updated within {limit:.0f} s")
    ms = (loop.time() - t0) * 1000
    note = "" if key_looks_project_scoped(settings.secrets.openai_api_key.get_secret_value()) else (
        "; warning: not a project-scoped key (sk-proj-...): in a public place use one limited to the "
        "Realtime API with a monthly budget"
    )
    return ok("realtime", f"{where}: authenticated, session.update confirmed in {ms:.0f} ms{note}")


def key_looks_project_scoped(key: str) -> bool:
    """OpenAI's project keys start ``sk-proj-``; a user or legacy key opens the whole account."""
    return key.startswith("sk-proj-")


# An endpoint that exists but wants a POSTed batch answers a bare GET with one of these.
_REACHABLE = {400, 405, 411, 415, 422}


async def check_sync(settings: Settings) -> Result:
    """An HTTP GET reaches the CRM endpoint and its token is not refused."""
    s = settings.sync
    if not s.endpoint:
        return skip("sync", "sync disabled (sync.endpoint is empty); leads wait in the outbox")
    req = urllib.request.Request(s.endpoint, method="GET")
    token = settings.secrets.sync_token
    if token is not None:
        req.add_header("Authorization", f"Bearer {token.get_secret_value()}")

    def get() -> int:
        try:
            with urllib.request.urlopen(req, timeout=s.timeout_s) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    try:
        status = await asyncio.to_thread(get)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return fail("sync", f"{s.endpoint}: unreachable: {reason}")
    if status in (401, 403):
        return fail("sync", f"{s.endpoint}: reachable, but the token was refused (HTTP {status})")
    if status < 400 or status in _REACHABLE:
        return ok("sync", f"{s.endpoint}: reachable (HTTP {status})")
    return fail("sync", f"{s.endpoint}: HTTP {status}")
