"""The ``kiosk`` command: the parser, and the one place that turns errors into exit codes.

Each sub-command registers a ``handler(args) -> int``. Exit codes: 0 success; 1 a check
failed; 2 a usage error (argparse's code, also for arguments a handler finds unusable);
``os.EX_UNAVAILABLE`` (69) a device, the database or a service is missing;
``os.EX_CONFIG`` (78) the configuration is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import sys
from pathlib import Path

from kiosk import __version__
from kiosk.cli import args as cli_args
from kiosk.cli import leads, report, selftest, status, tools
from kiosk.config import SYSTEM_CONFIG, default_config_path, load_settings, masked_dump
from kiosk.errors import ConfigError, DeviceError, StoreError, UsageError
from kiosk.logs import setup_logging

log = logging.getLogger("kiosk")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiosk", description="Voice kiosk daemon for investor-loan visitors.")
    p.add_argument("--version", action="version", version=f"kiosk {__version__}")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default /etc/kiosk/kiosk.toml when it exists, else the built-in defaults)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the kiosk on real devices")
    run.add_argument("--no-gpio", action="store_true", help="no GPIO: Enter on the terminal is the button")
    run.add_argument("--trace", type=Path, help="write a JSON-lines wire trace here")
    run.set_defaults(handler=_run)

    demo = sub.add_parser("demo", help="run one visit offline against the simulator")
    demo.add_argument("--scenario", default="happy_path", help="scenario name (default happy_path)")
    demo.add_argument(
        "--speed",
        type=cli_args.positive,
        default=4.0,
        help="audio pacing relative to real time (1 = real time; default 4)",
    )
    demo.add_argument("--workdir", type=Path, help="keep the database and audio here (default: a temp dir)")
    demo.add_argument("--trace", type=Path, help="write a JSON-lines wire trace here")
    demo.add_argument("--json", action="store_true", help="also print the checks as JSON")
    demo.set_defaults(handler=_demo)

    devices = sub.add_parser("devices", help="list audio devices with their channels and accepted rates")
    devices.add_argument(
        "--echo", action="store_true", help="then play a burst on the configured speaker and report the echo path"
    )
    devices.add_argument("--meter", action="store_true", help="listen on every microphone: which one hears the room?")
    devices.add_argument("--seconds", type=cli_args.positive, default=5.0, help="how long --meter listens (default 5)")
    devices.set_defaults(handler=_devices)

    cfg = sub.add_parser("config", help="check or show the configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfg_sub.add_parser("check", help="validate; exit 78 with one line per problem when invalid")
    check.add_argument("--strict", action="store_true", help="also refuse the shipped example values (warnings)")
    cfg_sub.add_parser("show", help="print the effective settings, secrets masked")
    cfg.set_defaults(handler=_config)

    sim = sub.add_parser("sim", help="the offline Realtime simulator")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve the simulator for any client")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=cli_args.port, default=8765)
    serve.add_argument("--scenario", default="default")
    serve.set_defaults(handler=_sim_serve)
    for commands in (tools, leads, selftest, status, report):
        commands.register(sub)
    _config_anywhere(p)
    return p


def _config_anywhere(parser: argparse.ArgumentParser) -> None:
    """``--config`` is accepted after the sub-command too (``kiosk config check --config F``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                _config_anywhere(child)


def _config(args: argparse.Namespace) -> int:
    from kiosk.config.checks import check_settings

    loaded = load_settings(args.config)
    findings = check_settings(loaded.settings)
    strict = getattr(args, "strict", False)
    findings.raise_errors(strict=strict)
    for warning in findings.warnings:
        print(f"config: warning: {warning}", file=sys.stderr)
    if args.config_command == "check":
        from kiosk.config.deprecations import deprecations, model_warnings, openai_root, price_warnings

        where = loaded.path or "(defaults only: no config file found)"
        extra = f" ({len(findings.warnings)} warning(s); --strict refuses them)" if findings.warnings else ""
        print(f"config OK: {where}{extra}")
        # Valid today, but a shutdown date is coming: say so, without failing the check.
        s = loaded.settings
        for line in model_warnings(s.realtime, deprecations(openai_root())) + price_warnings(s.cost):
            print(f"config: warning: {line}", file=sys.stderr)
        return 0
    print(json.dumps(masked_dump(loaded.settings), indent=2, default=str))
    return 0


def _sim_serve(args: argparse.Namespace) -> int:
    from kiosk.sim.scenario import load_scenario
    from kiosk.sim.server import SimOptions, SimServer, serve_until_signal

    setup_logging("INFO")
    try:
        scenario = load_scenario(args.scenario)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    async def serve() -> None:
        server = SimServer(SimOptions(scenario=scenario))
        await server.start(args.host, args.port)
        banner = f"simulator: {server.url}?model=gpt-realtime-2.1 (scenario {scenario.name}); Ctrl-C stops"
        await serve_until_signal(server, lambda s: print(banner, flush=True))

    asyncio.run(serve())
    return 0


def _devices(args: argparse.Namespace) -> int:
    """The device table (exit 69 when the configured devices are missing), or the meter."""
    from kiosk.audio.devices import choose, describe, meter, meter_table, new_pyaudio

    loaded = load_settings(args.config)
    pa = new_pyaudio()
    try:
        if args.meter:
            print(f"listening on every microphone for {args.seconds:g} s: speak or clap near the kiosk ...",
                  file=sys.stderr, flush=True)  # fmt: skip
            print(meter_table(meter(pa, args.seconds)))
            return 0
        print(describe(pa, loaded.settings.audio))
        choose(pa, loaded.settings.audio)  # DeviceError (exit 69) when a configured one is missing
        if not args.echo:
            return 0
        from kiosk.cli.echocheck import check_echo

        report = asyncio.run(check_echo(pa, loaded.settings.audio, loaded.settings.echo))
        print(f"echo path: {report.line()}")
        return 0 if report.ok else 1
    finally:
        pa.terminate()


def _run(args: argparse.Namespace) -> int:
    from kiosk.config.checks import check_settings
    from kiosk.runtime.daemon import run_daemon

    loaded = load_settings(args.config)
    setup_logging(loaded.settings.log.level, redact_pii=loaded.settings.log.redact_pii)
    # What `kiosk config check` refuses, the daemon refuses too (exit 78: systemd does not
    # restart it; a visitor never meets an assistant without its consent script).
    findings = check_settings(loaded.settings)
    for warning in findings.warnings:
        log.warning("config: %s", warning)
    findings.raise_errors()
    return run_daemon(loaded.settings, no_gpio=args.no_gpio, trace=args.trace)


def _demo(args: argparse.Namespace) -> int:
    from kiosk.sim import demo

    setup_logging("WARNING")
    return demo.main(args.scenario, args.speed, args.workdir, args.config, args.trace, args.json)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kiosk`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except BrokenPipeError:
        # `kiosk leads show ... | head`: the reader has gone; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UsageError as exc:
        try:
            parser.error(f"{args.command}: {exc}")
        except SystemExit as usage:  # argparse's own exit code for usage errors
            return int(usage.code or 0)
    except ConfigError as exc:
        # Any command that loads the configuration reports a broken one the same way.
        for line in exc.problems:
            print(f"config: {line}", file=sys.stderr)
        if getattr(args, "config", None) is None and default_config_path() is None:
            # Defaults only: say why, since a checkout's config/ is never picked up by itself.
            print(f"config: no {SYSTEM_CONFIG}; pass --config PATH (config/kiosk.toml in a checkout)", file=sys.stderr)
        return os.EX_CONFIG
    except (DeviceError, StoreError) as exc:
        log.error("%s", exc)
        print(f"{args.command}: {exc}", file=sys.stderr)
        return os.EX_UNAVAILABLE
    except sqlite3.DatabaseError as exc:  # damage found mid-command: the same clear line, no traceback
        from kiosk.leads.sqlfaults import store_error

        error = store_error("database", exc)
        log.error("%s", error)
        print(f"{args.command}: {error}", file=sys.stderr)
        return os.EX_UNAVAILABLE
    return code


if __name__ == "__main__":
    sys.exit(main())
