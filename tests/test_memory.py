"""Memory: what the kiosk holds, and the benchmark's kiosk process weighing what the daemon weighs (README "Memory")."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np

from kiosk.audio.pcm import RATE, read_wav
from kiosk.bench import voices
from kiosk.runtime.compose import read_message
from kiosk.sim.scenario import synthesize
from tests.toolkit import checkout_settings


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_bench_kiosk_process_loads_no_numpy_random(tmp_path: Path) -> None:
    # numpy.random is about 6 MB resident and no part of the daemon uses it: the card and
    # the visitor's voice of the memory benchmark must not bring it into the kiosk's process.
    code = f"""
from pathlib import Path
import kiosk.bench.duplex
from kiosk.bench.probe import FifoCard
from kiosk.bench.voices import visitor_utterance
card = FifoCard(Path({str(tmp_path)!r}), marks=False)
card.start()
card.close()
visitor_utterance()
"""
    assert "numpy.random" not in _modules_after(code)
    assert "numpy.random" not in _modules_after("import kiosk.cli.main, kiosk.runtime.daemon")


def test_the_visitors_voice_is_the_sentences_start_made_without_the_whole() -> None:
    seconds = 0.45
    synthesize.cache_clear()  # measured as a fresh process makes it
    tracemalloc.start()
    try:
        got = voices.visitor_utterance(seconds)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The whole sentence (about 6 s) in float64 arrays peaks at several MB; the half second, not.
    assert peak < 1 << 20, f"{peak / 2**20:.1f} MB"
    whole = np.frombuffer(synthesize(voices._SENTENCE, pitch_hz=210.0, syllable_hz=6.0), dtype="<i2")
    n = int(seconds * RATE)
    expected = np.clip(whole[:n].astype(np.float64) * 2.5, -32767, 32766).astype("<i2").tobytes()
    assert got == expected, "the same samples as before"


def test_kiosk_run_loads_no_command_it_never_runs() -> None:
    # Every command builds the whole parser, which imports each command's module: what only
    # `kiosk selftest` and `kiosk report --html` run stays out of the daemon's process.
    code = """
from kiosk.cli.main import _parser
import kiosk.config.checks, kiosk.runtime.daemon
_parser().parse_args(["run", "--no-gpio"])
"""
    loaded = _modules_after(code)
    assert "kiosk.runtime.daemon" in loaded  # the probe does load the run path
    assert not {"kiosk.cli.probes", "kiosk.fleet.html", "html.entities"} & loaded


def test_the_prerecorded_messages_are_read_when_played_not_held() -> None:
    path = checkout_settings().session.offline_message
    tracemalloc.start()
    try:
        message = read_message(path)  # read once (an unusable file is reported at start-up)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 64 << 10, f"{held >> 10} kB held"  # the message itself is ~370 kB
    assert message is not None and message.pcm() == read_wav(path)
