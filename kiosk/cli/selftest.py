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
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

from kiosk.cli import args as cli_args
from kiosk.config import LoadedConfig, load_settings
from kiosk.errors import ConfigError

# The probes are imported where they run: every command builds the parser, which imports
# this module, and `kiosk run` must not carry the self-test's code for its whole life.
if TYPE_CHECKING:
    from kiosk.cli.probes import Options, Result

# ---- running -------------------------------------------------------------------------------


async def run_checks(
    loaded: LoadedConfig, opts: Options, *, pin_factory: Any = None, out: TextIO = sys.stdout
) -> list[Result]:
    """Run every check after the configuration (which ``loaded`` already passed)."""
    from kiosk.cli.probes import check_database, check_panel, check_realtime, check_sync, fail, ok, skip
    from kiosk.config.checks import check_settings

    settings = loaded.settings
    findings = check_settings(settings)  # exactly what `kiosk config check` checks
    if findings.errors:
        return [fail("config", line) for line in findings.errors]
    where = f"{loaded.path or '(defaults only)'} valid"
    results = [ok("config", f"{where}; {len(findings.warnings)} warning(s): see `kiosk config check`"
                  if findings.warnings else where)]  # fmt: skip
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
    p.add_argument(
        "--mic-seconds", type=cli_args.positive, default=2.0, help="audio captured for the level (default 2)"
    )
    p.add_argument("--min-mic-dbfs", type=cli_args.dbfs, default=-70.0, help="quieter than this fails (default -70)")
    p.add_argument(
        "--light-seconds", type=cli_args.seconds, default=0.5, help="time each light pattern shows (default 0.5)"
    )
    p.add_argument(
        "--button-timeout", type=cli_args.positive, default=15.0, help="wait this long for a press (default 15)"
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the self-test from parsed arguments; returns the exit status."""
    from kiosk.cli.probes import Options, fail
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
