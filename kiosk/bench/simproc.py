"""The simulator process of the audio benchmarks (its CPU must not count as the kiosk's).

``python -m kiosk.bench.simproc --workdir DIR [--think-ms N] [--greeting-s S] [--reply-s S]``
prints the realtime URL on its first line and serves until SIGTERM. Every reply is
marked audio (:func:`kiosk.bench.voices.assistant_reply`): the greeting is reply 0, the
answer to visitor turn *n* is reply *n*, later turns get the fallback (reply 99).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from kiosk.audio.pcm import write_wav
from kiosk.bench.voices import assistant_reply
from kiosk.sim.scenario import Reply, Scenario, Turn
from kiosk.sim.server import Faults, SimOptions, SimServer, serve_until_signal

TURNS = 40
FALLBACK = 99


def scenario(workdir: Path, greeting_s: float, reply_s: float) -> Scenario:
    """Marked replies written as WAV files under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)

    def reply(n: int, seconds: float) -> Reply:
        path = workdir / f"reply{n}.wav"
        write_wav(path, assistant_reply(seconds, n))
        return Reply(f"Reply number {n}.", path)

    turns = tuple(Turn(f"Question {n}", reply=reply(n, reply_s)) for n in range(1, TURNS + 1))
    return Scenario(
        name="bench",
        greeting=reply(0, greeting_s),
        turns=turns,
        fallback=reply(FALLBACK, reply_s),
        goodbye=reply(FALLBACK + 1, 0.5),
        idle=reply(FALLBACK + 2, 0.5),
    )


async def serve(opts: SimOptions) -> None:
    """Serve until SIGTERM/SIGINT; the first line on stdout is the URL."""
    server = SimServer(opts)
    await server.start()
    await serve_until_signal(server, lambda s: print(s.url, flush=True))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m kiosk.bench.simproc")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--think-ms", type=int, default=200)
    p.add_argument("--greeting-s", type=float, default=0.6)
    p.add_argument("--reply-s", type=float, default=3.0)
    args = p.parse_args(argv)
    sc = scenario(args.workdir, args.greeting_s, args.reply_s)
    asyncio.run(serve(SimOptions(scenario=sc, faults=Faults(think_ms=args.think_ms))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
