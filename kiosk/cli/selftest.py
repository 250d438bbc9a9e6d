"""``kiosk selftest``: check every part of an installed kiosk, print a pass/fail table.

Checks, in order: the configuration, the database (opened, migrated, written), the
microphone (level over 2 s of captured audio), the speaker (a test tone played out),
the lights (every pattern shown in turn), the button (a real press; ``--skip-button``),
the Realtime service (connect, authenticate, ``session.update`` -> ``session.updated``)
and the sync endpoint (an HTTP request reaches it). Exit status: 0 when nothing failed,
1 when a check failed, 78 when the configuration is invalid (nothing else can be run).

Stop the service first (``systemctl stop kiosk``): the sound devices and GPIO pins
are exclusive. Run it as the service user so files it creates belong to the kiosk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from kiosk.config import AudioSettings, LoadedConfig, Settings, load_settings
from kiosk.errors import ConfigError, DeviceError, FatalRealtimeError, RealtimeError, StoreError

EX_CONFIG = 78

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
    mic_s: float = 2.0
    min_mic_dbfs: float = -70.0
    tone_ms: int = 600
    tone_hz: float = 440.0
    light_s: float = 0.5
    button_s: float = 15.0


# ---- checks ------------------------------------------------------------------------------


def check_database(path: Path) -> Result:
    """Open (creating and migrating if needed) and write the database."""
    from kiosk.leads.store import Store

    existed = path.exists()
    try:
        store = Store(path)
    except StoreError as exc:
        return fail("database", str(exc))
    try:
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
    """Connect, authenticate, and have ``session.update`` confirmed by ``session.updated``."""
    from kiosk.realtime import session as rs
    from kiosk.realtime.connection import RealtimeConnection
    from kiosk.runtime.kiosk import default_tools, load_instructions, session_config

    r = settings.realtime
    where = f"{r.url} model {r.model}"
    key = settings.secrets.openai_api_key
    if key is None:
        return fail("realtime", "no API key: credential openai_api_key (or KIOSK_SECRETS__OPENAI_API_KEY) missing")
    core = rs.RealtimeSession(session_config(settings, load_instructions(settings), default_tools(1.0, settings)))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    limit = r.connect_timeout_s + 10.0
    try:
        async with asyncio.timeout(limit):
            conn = await RealtimeConnection.open(
                r.url, r.model, key, connect_timeout=r.connect_timeout_s, ping_interval=r.ping_interval_s
            )
            try:
                core.start()
                # A refusing server sends its error and closes at once, so a failed send
                # is not the verdict: the error frame may still be waiting to be read.
                with contextlib.suppress(RealtimeError):
                    for e in core.drain():
                        await conn.send(e)
                while True:
                    for eff in core.receive(await conn.recv(), loop.time()):
                        if isinstance(eff, rs.Ready):
                            ms = (loop.time() - t0) * 1000
                            return ok("realtime", f"{where}: authenticated, session.update confirmed in {ms:.0f} ms")
                        if isinstance(eff, rs.FatalError):
                            return fail("realtime", f"{where}: refused: {eff.code}: {eff.message}")
            finally:
                await conn.close()
    except FatalRealtimeError as exc:
        return fail("realtime", f"{where}: authentication failed: {exc}")
    except RealtimeError as exc:
        return fail("realtime", f"{where}: unreachable: {exc}")
    except TimeoutError:
        return fail("realtime", f"{where}: no session.updated within {limit:.0f} s")


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


# ---- running -------------------------------------------------------------------------------


async def run_checks(
    loaded: LoadedConfig, opts: Options, *, pin_factory: Any = None, out: TextIO = sys.stdout
) -> list[Result]:
    """Run every check after the configuration (which ``loaded`` already passed)."""
    settings = loaded.settings
    results = [ok("config", f"{loaded.path or '(defaults only)'} valid")]
    results.append(check_database(settings.store.path))
    if opts.no_audio:
        results += [skip("microphone", "--no-audio"), skip("speaker", "--no-audio")]
    else:
        results += await _audio_checks(settings.audio, opts)
    results += await check_panel(settings, opts, pin_factory, out)
    results.append(await check_realtime(settings))
    results.append(await check_sync(settings))
    return results


async def _audio_checks(a: AudioSettings, opts: Options) -> list[Result]:
    try:
        from kiosk.audio.devices import new_pyaudio

        pa = new_pyaudio()  # without Debian PortAudio's JACK chatter on stderr
    except (ImportError, OSError) as exc:
        why = f"PortAudio unavailable: {exc}"
        return [fail("microphone", why), fail("speaker", why)]
    try:
        steps: list[Callable[[], Awaitable[Result]]] = [
            lambda: check_microphone(pa, a, opts.mic_s, opts.min_mic_dbfs),
            lambda: check_speaker(pa, a, opts.tone_hz, opts.tone_ms),
        ]
        return [await step() for step in steps]
    finally:
        pa.terminate()


def render(results: list[Result]) -> str:
    """The pass/fail table."""
    width = max(len(r.name) for r in results)
    lines = [f"{'CHECK':<{width}}  RESULT  DETAIL"]
    lines += [f"{r.name:<{width}}  {r.status:<6}  {r.detail}" for r in results]
    failed = sum(r.status == "FAIL" for r in results)
    lines.append(f"{len(results)} checks: {failed} failed" if failed else f"{len(results)} checks: all passed")
    return "\n".join(lines)


def exit_code(results: list[Result]) -> int:
    """78 for an invalid configuration, 1 when any check failed, else 0."""
    if any(r.name == "config" and r.status == "FAIL" for r in results):
        return EX_CONFIG
    return 1 if any(r.status == "FAIL" for r in results) else 0


def register(sub: Any) -> None:
    """Add ``kiosk selftest`` to the CLI."""
    p: argparse.ArgumentParser = sub.add_parser(
        "selftest", help="check config, database, microphone, speaker, lights, button, Realtime, sync"
    )
    p.add_argument("--skip-button", action="store_true", help="do not wait for a button press")
    p.add_argument("--no-gpio", action="store_true", help="skip lights and button (a machine without GPIO)")
    p.add_argument("--no-audio", action="store_true", help="skip microphone and speaker")
    p.add_argument("--mic-seconds", type=float, default=2.0, help="audio captured for the level (default 2)")
    p.add_argument("--min-mic-dbfs", type=float, default=-70.0, help="quieter than this fails (default -70)")
    p.add_argument("--light-seconds", type=float, default=0.5, help="time each light pattern shows (default 0.5)")
    p.add_argument("--button-timeout", type=float, default=15.0, help="wait this long for a press (default 15)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the self-test from parsed arguments; returns the exit status."""
    from kiosk.logs import setup_logging

    setup_logging("WARNING")
    opts = Options(
        skip_button=args.skip_button,
        no_gpio=args.no_gpio,
        no_audio=args.no_audio,
        mic_s=args.mic_seconds,
        min_mic_dbfs=args.min_mic_dbfs,
        light_s=args.light_seconds,
        button_s=args.button_timeout,
    )
    try:
        loaded = load_settings(args.config)
        results = asyncio.run(run_checks(loaded, opts, out=sys.stderr))
    except ConfigError as exc:
        results = [fail("config", line) for line in exc.problems]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(render(results))
    return exit_code(results)
