"""The ``kiosk`` command.

Exit codes: 0 success; 1 a check failed; 2 usage error; 69 (EX_UNAVAILABLE) a device or
service is missing; 78 (EX_CONFIG) the configuration is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from kiosk import __version__
from kiosk.cli import leads as leads_cli
from kiosk.cli import tools as toolcmd
from kiosk.config import SYSTEM_CONFIG, LoadedConfig, default_config_path, load_settings, masked_dump
from kiosk.errors import ConfigError, DeviceError, StoreError
from kiosk.logs import setup_logging
from kiosk.tools.lending import load_lending

EX_UNAVAILABLE = 69
EX_CONFIG = 78

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

    demo = sub.add_parser("demo", help="run one visitor session offline against the simulator")
    demo.add_argument("--scenario", default="happy_path", help="scenario name (default happy_path)")
    demo.add_argument(
        "--speed", type=float, default=4.0, help="audio pacing relative to real time (1 = real time; default 4)"
    )
    demo.add_argument("--workdir", type=Path, help="keep the database and audio here (default: a temp dir)")
    demo.add_argument("--trace", type=Path, help="write a JSON-lines wire trace here")
    demo.add_argument("--json", action="store_true", help="also print the checks as JSON")

    sub.add_parser("devices", help="list audio devices with their channels and accepted rates")

    cfg = sub.add_parser("config", help="check or show the configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    cfg_sub.add_parser("check", help="validate; exit 78 with one line per problem when invalid")
    cfg_sub.add_parser("show", help="print the effective settings, secrets masked")

    sim = sub.add_parser("sim", help="the offline Realtime simulator")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve the simulator for any client")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--scenario", default="default")
    toolcmd.register(sub)
    leads_cli.register(sub)

    from kiosk.cli import selftest, status

    selftest.register(sub)
    status.register(sub)
    return p


def _load(args: argparse.Namespace) -> LoadedConfig:
    return load_settings(args.config)


def _config(args: argparse.Namespace) -> int:
    loaded = _load(args)
    load_lending(loaded.settings.tools.lending_file)  # part of the configuration: checked too
    if args.config_command == "check":
        where = loaded.path or "(defaults only: no config file found)"
        print(f"config OK: {where}")
        return 0
    print(json.dumps(masked_dump(loaded.settings), indent=2, default=str))
    return 0


def _sim_serve(args: argparse.Namespace) -> int:
    from kiosk.sim.scenario import load_scenario
    from kiosk.sim.server import SimOptions, SimServer, serve_until_signal

    try:
        scenario = load_scenario(args.scenario)
    except ValueError as exc:
        print(f"sim: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        server = SimServer(SimOptions(scenario=scenario))
        await server.start(args.host, args.port)
        banner = f"simulator: {server.url}?model=gpt-realtime (scenario {scenario.name}); Ctrl-C stops"
        await serve_until_signal(server, lambda s: print(banner, flush=True))

    asyncio.run(serve())
    return 0


def _devices(args: argparse.Namespace) -> int:
    from kiosk.audio.devices import describe, new_pyaudio

    loaded = _load(args)
    pa = new_pyaudio()
    try:
        print(describe(pa, loaded.settings.audio))
    finally:
        pa.terminate()
    return 0


def _run(args: argparse.Namespace) -> int:
    from kiosk.runtime.daemon import run_daemon

    loaded = _load(args)
    setup_logging(loaded.settings.log.level, redact_pii=loaded.settings.log.redact_pii)
    try:
        return run_daemon(loaded.settings, no_gpio=args.no_gpio, trace=args.trace)
    except (DeviceError, StoreError) as exc:
        log.error("%s", exc)
        return EX_UNAVAILABLE


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kiosk`` console script."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        # Any command that loads the configuration reports a broken one the same way.
        for line in exc.problems:
            print(f"config: {line}", file=sys.stderr)
        if getattr(args, "config", None) is None and default_config_path() is None:
            # Defaults only: say why, since a checkout's config/ is never picked up by itself.
            print(f"config: no {SYSTEM_CONFIG}; pass --config PATH (config/kiosk.toml in a checkout)", file=sys.stderr)
        return EX_CONFIG


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "config":
        return _config(args)
    if args.command == "demo":
        from kiosk.sim import demo

        setup_logging("WARNING")
        return demo.main(args.scenario, args.speed, args.workdir, args.config, args.trace, args.json)
    if args.command == "sim":
        setup_logging("INFO")
        return _sim_serve(args)
    if args.command == "run":
        return _run(args)
    if args.command == "devices":
        return _devices(args)
    if args.command in toolcmd.COMMANDS:
        setup_logging("WARNING")
        return toolcmd.main(args)
    if args.command in ("sync", "leads"):
        return leads_cli.run(args, _load)
    if hasattr(args, "handler"):  # sub-commands that register themselves (kiosk selftest, kiosk status)
        code: int = args.handler(args)
        return code
    return 2


if __name__ == "__main__":
    sys.exit(main())
