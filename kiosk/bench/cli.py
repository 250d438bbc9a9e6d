"""``scripts/bench [--check] [--json out.json] [--quick]``: run every benchmark, print a table, write JSON.

Processes: the simulator runs in a process of its own (its CPU is not the kiosk's); each
audio benchmark runs the kiosk in a fresh process (:mod:`kiosk.bench.duplex`); start-up
runs ``kiosk run``; the lead receiver runs as ``scripts/lead-receiver``; the echo figures
come from the reverberant booth on a simulated card, offline (:mod:`kiosk.bench.echoroom`).
``--quick`` runs everything briefly (the smoke test uses it) and checks no budget.

The package reads nothing from a checkout: the kiosk configuration (``--config``) and the
receiver script (``--lead-receiver``) are arguments; ``scripts/bench`` passes the checkout's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kiosk.bench import echoroom, kbbench, startup, syncbench, threads
from kiosk.bench.analyse import pct
from kiosk.config import load_settings

THINK_MS = 200  # the simulator's fixed think time, subtracted from press-to-first-audio


@dataclass(frozen=True)
class Budget:
    """A limit on one metric: value <= limit (``at_least``: value >= limit)."""

    limit: float
    at_least: bool = False

    def ok(self, value: float) -> bool:
        """Within budget (a missing measurement never is)."""
        if math.isnan(value):
            return False
        return value >= self.limit if self.at_least else value <= self.limit

    def text(self) -> str:
        """'<= 10' / '>= 500'."""
        return f"{'>=' if self.at_least else '<='} {self.limit:g}"


# Every metric the bench reports, in table order, with its unit and budget (None: reported only).
METRICS: dict[str, tuple[str, Budget | None]] = {
    "mic_to_wire_p50_ms": ("ms", None),
    "mic_to_wire_p99_ms": ("ms", Budget(10)),
    "wire_to_speaker_p50_ms": ("ms", None),
    "wire_to_speaker_p99_ms": ("ms", Budget(10)),
    "wire_to_buffer_p99_ms": ("ms", None),
    "prebuffer_ms": ("ms", None),
    "first_audio_warm_p50_ms": ("ms", None),
    "first_audio_warm_p99_ms": ("ms", None),
    "first_audio_cold_p50_ms": ("ms", None),
    "first_audio_cold_p99_ms": ("ms", None),
    "barge_in_p50_ms": ("ms", None),
    "barge_in_p99_ms": ("ms", Budget(30)),
    "truncation_error_max_ms": ("ms", Budget(20)),
    # Whole full duplex, with the configured echo mode (aec): the canceller is part of it.
    "cpu_percent": ("% of a core", Budget(4)),
    # The same workload through the kiosk's Realtime client alone, in the same run (rounds
    # alternating with the full kiosk's): absolute figures drift with the machine, this does not.
    "bare_cpu_percent": ("% of a core", None),
    "cpu_ratio_full_to_bare": ("ratio", Budget(2.0)),
    # Nobody there (microphone streaming, speaker silent, warm standby): most of the day.
    "idle_cpu_percent": ("% of a core", None),
    "peak_rss_mb": ("MB", Budget(64)),
    "rss_growth_mb": ("MB", Budget(1)),
    "ready_p50_s": ("s", Budget(1.5)),
    "ready_max_s": ("s", None),
    "kb_p50_ms": ("ms", None),
    "kb_p99_ms": ("ms", Budget(5)),
    "sync_leads_per_s": ("leads/s", Budget(500, at_least=True)),
    "sync_drain_s": ("s", None),
    # The reverberant booth (worst of three seeds and of both VAD stand-ins), aec then gate.
    "echo_false_starts_per_min": ("per min", Budget(0)),
    "echo_caught_minus10db": ("fraction", Budget(0.8, at_least=True)),  # 5 of 6 (fractions are sixths)
    "echo_caught_minus6db": ("fraction", Budget(1, at_least=True)),
    "echo_caught_0db": ("fraction", None),
    "echo_caught_plus6db": ("fraction", None),
    "echo_latency_minus10db_ms": ("ms", None),
    "echo_latency_minus6db_ms": ("ms", None),
    "echo_latency_0db_ms": ("ms", None),
    "echo_latency_plus6db_ms": ("ms", None),
    "echo_erle_db": ("dB", Budget(25, at_least=True)),
    "echo_reduction_db": ("dB", None),
    "aec_cpu_percent": ("% of a core", Budget(1.5)),
    "echo_stage_cpu_percent": ("% of a core", None),
    "aec_rss_mb": ("MB", Budget(5)),
    "gate_false_starts_per_min": ("per min", None),
    "gate_caught_minus10db": ("fraction", None),
    "gate_caught_minus6db": ("fraction", None),
    "gate_caught_0db": ("fraction", None),
    "gate_caught_plus6db": ("fraction", None),
}


@dataclass(frozen=True)
class Plan:
    """How much of each benchmark to run."""

    latency_sessions: int = 6
    latency_cycles: int = 5
    cold_sessions: int = 5
    memory_sessions: int = 10
    memory_cycles: int = 2
    stream_s: float = 20.0  # per round
    cpu_rounds: int = 3  # full kiosk and bare client alternating; medians
    ready_runs: int = 5
    kb_chunks: int = 10_000
    kb_queries: int = 400
    sync_leads: int = 10_000
    echo_seeds: tuple[int, ...] = (1, 2, 3)
    echo_seconds: float = 60.0
    echo_warmup_s: float = 10.0
    echo_interruptions: int = 6


QUICK = Plan(
    latency_sessions=1,
    latency_cycles=1,
    cold_sessions=1,
    memory_sessions=2,
    memory_cycles=0,
    stream_s=1.0,
    cpu_rounds=1,
    ready_runs=1,
    kb_chunks=1000,
    kb_queries=40,
    sync_leads=200,
    echo_seeds=(1,),
    echo_seconds=12.0,
    echo_warmup_s=4.0,
    echo_interruptions=2,
)


@contextlib.contextmanager
def simulator(workdir: Path, *, greeting_s: float = 0.6, reply_s: float = 3.0) -> Iterator[str]:
    """A simulator process; yields its realtime URL."""
    cmd = [sys.executable, "-m", "kiosk.bench.simproc", "--workdir", str(workdir), "--think-ms", str(THINK_MS)]
    cmd += ["--greeting-s", str(greeting_s), "--reply-s", str(reply_s)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("ws://"):
            raise RuntimeError("the simulator did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def kiosk_process(url: str, workdir: Path, config: Path | None, mode: str, *extra: str) -> dict[str, Any]:
    """Run :mod:`kiosk.bench.duplex` in a fresh process; its JSON result."""
    out = workdir / "result.json"
    cmd = [sys.executable, "-m", "kiosk.bench.duplex", "--mode", mode, "--url", url]
    cmd += ["--workdir", str(workdir), "--out", str(out), *(["--config", str(config)] if config else []), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kiosk benchmark process failed ({mode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _ms(values: list[float], q: float, minus: float = 0.0) -> float:
    return round(pct(values, q) - minus, 2)


def audio(plan: Plan, root: Path, config: Path | None, metrics: dict[str, float], note: dict[str, Any]) -> None:
    """Latency, barge-in, truncation, first audio, memory and CPU on the simulator with FIFO audio."""
    prebuffer = load_settings(config).settings.audio.prebuffer_ms
    with simulator(root / "sim") as url:
        r = kiosk_process(
            url,
            root / "latency",
            config,
            "sessions",
            "--probes",
            *_sessions(plan.latency_sessions, plan.latency_cycles),
        )
        metrics["mic_to_wire_p50_ms"] = _ms(r["mic_to_wire"], 50)
        metrics["mic_to_wire_p99_ms"] = _ms(r["mic_to_wire"], 99)
        metrics["wire_to_speaker_p50_ms"] = _ms(r["wire_to_speaker"], 50, prebuffer)
        metrics["wire_to_speaker_p99_ms"] = _ms(r["wire_to_speaker"], 99, prebuffer)
        metrics["wire_to_buffer_p99_ms"] = _ms(r["wire_to_buffer"], 99)
        metrics["prebuffer_ms"] = prebuffer
        metrics["barge_in_p50_ms"] = _ms(r["barge_in"], 50)
        metrics["barge_in_p99_ms"] = _ms(r["barge_in"], 99)
        errors = [abs(e) for e in r["truncation_error"]]
        metrics["truncation_error_max_ms"] = round(max(errors), 2) if errors else math.nan
        metrics["first_audio_warm_p50_ms"] = _ms(r["first_audio_ms"], 50, THINK_MS)
        metrics["first_audio_warm_p99_ms"] = _ms(r["first_audio_ms"], 99, THINK_MS)
        note["samples"] = {k: len(r[k]) for k in ("mic_to_wire", "wire_to_speaker", "barge_in", "truncation_error")}
        note["underruns_latency_run"] = r["underruns"]
        cold = kiosk_process(url, root / "cold", config, "sessions", "--cold", *_sessions(plan.cold_sessions, 0))
        metrics["first_audio_cold_p50_ms"] = _ms(cold["first_audio_ms"], 50, THINK_MS)
        metrics["first_audio_cold_p99_ms"] = _ms(cold["first_audio_ms"], 99, THINK_MS)
        mem = kiosk_process(
            url, root / "memory", config, "sessions", *_sessions(plan.memory_sessions, plan.memory_cycles)
        )
        metrics["peak_rss_mb"] = round(mem["hwm_kb"] / 1024, 1)
        metrics["rss_growth_mb"] = round((mem["rss_kb"][-1] - mem["rss_kb"][0]) / 1024, 2)
        note["rss_mb_after_each_session"] = [round(v / 1024, 1) for v in mem["rss_kb"]]
        note["rss_at_end_mb"] = {"anon": round(mem["anon_kb"] / 1024, 1), "file": round(mem["file_kb"] / 1024, 1)}
    cpu(plan, root, config, metrics, note)


def cpu(plan: Plan, root: Path, config: Path | None, metrics: dict[str, float], note: dict[str, Any]) -> None:
    """Full duplex against the bare client: ``cpu_rounds`` rounds, each both in turn (which
    goes first alternates), so the machine's other work weighs on both alike; medians."""
    full: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    with simulator(root / "sim-stream", greeting_s=plan.stream_s + 5) as url:
        for r in range(plan.cpu_rounds):
            order = ("stream", "bare") if r % 2 == 0 else ("bare", "stream")
            for mode in order:
                got = kiosk_process(url, root / f"{mode}{r}", config, mode, "--seconds", str(plan.stream_s))
                (full if mode == "stream" else bare).append(got)
        idle = kiosk_process(url, root / "idle", config, "idle", "--seconds", str(plan.stream_s))
    ratios = [f["cpu_percent"] / b["cpu_percent"] for f, b in zip(full, bare, strict=True)]
    metrics["cpu_percent"] = round(statistics.median(f["cpu_percent"] for f in full), 2)
    metrics["bare_cpu_percent"] = round(statistics.median(b["cpu_percent"] for b in bare), 2)
    metrics["cpu_ratio_full_to_bare"] = round(statistics.median(ratios), 2)
    metrics["idle_cpu_percent"] = round(idle["cpu_percent"], 2)
    note["cpu"] = {
        "rounds": plan.cpu_rounds,
        "seconds_per_round": plan.stream_s,
        "full_percent": [round(f["cpu_percent"], 2) for f in full],
        "bare_percent": [round(b["cpu_percent"], 2) for b in bare],
        "ratios": [round(x, 2) for x in ratios],
        # Per thread, % of a core (median over the rounds): where the time goes.
        "full_threads_percent": _thread_medians(full),
        "bare_threads_percent": _thread_medians(bare),
        "idle_threads_percent": _thread_medians([idle]),
        "idle_echo_stage_percent": round(100 * idle["echo_stage_cpu_s"] / idle["wall_s"], 2),
        "echo_stage_percent": round(statistics.median(100 * f["echo_stage_cpu_s"] / f["wall_s"] for f in full), 2),
        "canceller_percent": round(statistics.median(100 * f["canceller_cpu_s"] / f["wall_s"] for f in full), 2),
        **{k: full[-1][k] for k in ("card_cpu_s", "still_playing", "underruns")},
    }


def _thread_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    names = {n for r in runs for n in r["thread_cpu_s"]}
    out = {n: statistics.median(100 * r["thread_cpu_s"].get(n, 0.0) / r["wall_s"] for r in runs) for n in names}
    return {n: round(v, 2) for n, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}


def _sessions(n: int, cycles: int) -> list[str]:
    return ["--sessions", str(n), "--cycles", str(cycles)]


def ready(plan: Plan, root: Path, config: Path | None, metrics: dict[str, float], note: dict[str, Any]) -> None:
    """Start-up to READY=1, after one unmeasured start that warms the disk cache and builds the index."""
    with simulator(root / "sim-ready") as url:
        first = startup.time_to_ready(root / "ready", url, config)
        runs = [startup.time_to_ready(root / "ready", url, config) for _ in range(plan.ready_runs)]
    metrics["ready_p50_s"] = round(pct(runs, 50), 3)
    metrics["ready_max_s"] = round(max(runs), 3)
    note["ready_first_start_s"] = round(first, 3)


def knowledge(plan: Plan, metrics: dict[str, float], note: dict[str, Any]) -> None:
    """Knowledge-base search."""
    kb = kbbench.run(plan.kb_chunks, plan.kb_queries)
    metrics["kb_p50_ms"] = kb["all"]["p50"]
    metrics["kb_p99_ms"] = kb["all"]["p99"]
    note["kb"] = kb


def sync(plan: Plan, root: Path, receiver: Path, metrics: dict[str, float], note: dict[str, Any]) -> None:
    """Lead sync to the reference receiver."""
    s = syncbench.run(root / "sync", plan.sync_leads, receiver)
    metrics["sync_leads_per_s"] = s["leads_per_s"]
    metrics["sync_drain_s"] = s["drain_s"]
    note["sync_leads"] = s["leads"]


_LEVEL_NAMES = {-10: "minus10db", -6: "minus6db", 0: "0db", 6: "plus6db"}


def echo(plan: Plan, config: Path | None, metrics: dict[str, float], note: dict[str, Any]) -> None:
    """Barge-in in the reverberant booth, gate and aec side by side, the devices' periods as
    configured; the echo stage's CPU and memory."""
    a = load_settings(config).settings.audio
    periods = (a.input_period_ms or a.period_ms, a.period_ms)
    fig = echoroom.measure(plan.echo_seeds, plan.echo_seconds, plan.echo_warmup_s, plan.echo_interruptions, periods)
    metrics["echo_false_starts_per_min"] = fig.false_per_min["aec"]
    metrics["gate_false_starts_per_min"] = fig.false_per_min["gate"]
    for level, name in _LEVEL_NAMES.items():
        metrics[f"echo_caught_{name}"] = fig.caught["aec"][level]
        metrics[f"echo_latency_{name}_ms"] = round(fig.latency_ms["aec"][level], 1)
        metrics[f"gate_caught_{name}"] = fig.caught["gate"][level]
    metrics["echo_erle_db"] = fig.erle_db
    metrics["echo_reduction_db"] = fig.reduction_db
    metrics["aec_cpu_percent"] = fig.canceller_cpu_percent
    metrics["echo_stage_cpu_percent"] = fig.stage_cpu_percent
    metrics["aec_rss_mb"] = echoroom.rss_added_mb()
    note["echo"] = {
        "seeds": list(plan.echo_seeds),
        "seconds": plan.echo_seconds,
        "warmup_s": plan.echo_warmup_s,
        "interruptions": plan.echo_interruptions,
        "device_periods_ms": {"microphone": periods[0], "speaker": periods[1]},
        "gate_latency_ms": {_LEVEL_NAMES[k]: v for k, v in fig.latency_ms["gate"].items()},
        **fig.details,
    }


def table(metrics: dict[str, float]) -> str:
    """The results as an aligned text table with the budget verdicts."""
    rows = [("metric", "value", "unit", "budget", "")]
    for key, (unit, budget) in METRICS.items():
        value = metrics.get(key, math.nan)
        verdict = "" if budget is None else ("ok" if budget.ok(value) else "OVER")
        rows.append((key, f"{value:g}", unit, budget.text() if budget else "", verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def failures(metrics: dict[str, float]) -> list[str]:
    """Metrics over their budget."""
    return [k for k, (_, b) in METRICS.items() if b is not None and not b.ok(metrics.get(k, math.nan))]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/bench``."""
    p = argparse.ArgumentParser(prog="scripts/bench", description="Benchmarks and the performance budget.")
    p.add_argument("--check", action="store_true", help="exit 1 when a metric is over its budget")
    p.add_argument("--json", type=Path, help="write the results here as JSON")
    p.add_argument("--quick", action="store_true", help="a few seconds of each benchmark; budgets not checked")
    p.add_argument("--config", type=Path, help="kiosk configuration (default: the kiosk's own default)")
    p.add_argument(
        "--lead-receiver", type=Path, required=True, help="the reference receiver script (scripts/lead-receiver)"
    )
    args = p.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    metrics: dict[str, float] = {}
    note: dict[str, Any] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as tmp:
        root = Path(tmp)
        steps: list[tuple[str, Callable[[], None]]] = [
            ("knowledge base", lambda: knowledge(plan, metrics, note)),
            ("sync", lambda: sync(plan, root, args.lead_receiver, metrics, note)),
            ("start-up", lambda: ready(plan, root, args.config, metrics, note)),
            ("audio", lambda: audio(plan, root, args.config, metrics, note)),
            ("echo room", lambda: echo(plan, args.config, metrics, note)),
        ]
        for name, step in steps:
            print(f"bench: {name}...", file=sys.stderr, flush=True)
            step()
    over = failures(metrics)
    report = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": threads.machine(),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "metrics": metrics,
        "budgets": {k: b.text() for k, (_, b) in METRICS.items() if b is not None},
        "over_budget": over,
        "details": note,
    }
    print(table(metrics))
    print(f"{len(over)} metric(s) over budget: {', '.join(over) or 'none'}  ({report['seconds']} s)")
    if args.json:
        args.json.write_text(json.dumps(_no_nan(report), indent=2, allow_nan=False) + "\n")
    return 1 if args.check and over and not args.quick else 0


def _no_nan(value: Any) -> Any:
    """NaN (a metric that could not be measured) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value
