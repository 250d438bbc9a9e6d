"""``kiosk selftest``: check every part of an installed kiosk, print a pass/fail table.

Checks, in order: the configuration, the database (opened, migrated, written), the
microphone (level over 2 s of captured audio), the speaker (a test tone played out), the
echo path (a burst on the speaker: does the microphone hear it, with what delay, and how
much the echo canceller takes out; :mod:`kiosk.cli.echocheck`; ``--skip-echo``), the
lights (every pattern shown in turn), the button (a real press; ``--skip-button``), the
Realtime service (connect, authenticate, ``session.update`` -> ``session.updated``)
and the sync endpoint (an HTTP request reaches it). Exit status: 0 when nothing failed,
1 when a check failed, 78 when the configuration is invalid (nothing else can be run).

Stop the service first (``systemctl stop kiosk``): the sound devices and GPIO pins
are exclusive. Run it as the service user so files it creates belong to the kiosk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from kiosk.cli.results import Result, fail, ok, skip
from kiosk.config import LoadedConfig, Settings, load_settings
from kiosk.errors import ConfigError, FatalRealtimeError, RealtimeError, StoreError

__all__ = ["Options", "Result", "check_database", "check_panel", "check_realtime", "check_sync", "fail", "ok", "skip"]


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
        return fail("realtime", "no API key: credential openai_api_key (or KIOSK_SECRETS__OPENAI_API_KEY) missing")
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
    return ok("realtime", f"{where}: authenticated, session.update confirmed in {ms:.0f} ms")


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
        results += [skip("microphone", "--no-audio"), skip("speaker", "--no-audio"), skip("echo", "--no-audio")]
    else:
        from kiosk.cli.audiochecks import audio_checks

        results += await audio_checks(settings, opts)
    results += await check_panel(settings, opts, pin_factory, out)
    results.append(await check_realtime(settings))
    results.append(await check_sync(settings))
    return results


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
        return os.EX_CONFIG
    return 1 if any(r.status == "FAIL" for r in results) else 0


def register(sub: Any) -> None:
    """Add ``kiosk selftest`` to the CLI."""
    p: argparse.ArgumentParser = sub.add_parser(
        "selftest", help="check config, database, microphone, speaker, echo path, lights, button, Realtime, sync"
    )
    p.add_argument("--skip-button", action="store_true", help="do not wait for a button press")
    p.add_argument("--no-gpio", action="store_true", help="skip lights and button (a machine without GPIO)")
    p.add_argument("--no-audio", action="store_true", help="skip microphone, speaker and echo path")
    p.add_argument(
        "--skip-echo", action="store_true", help="skip the echo path check (no speaker where the microphone hears it)"
    )
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
        skip_echo=args.skip_echo,
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
