"""Prometheus metrics for node_exporter's textfile collector: the text format, the kiosk's
metric families from one snapshot (pure), and the atomic write of ``kiosk.prom``.

node_exporter reads every ``*.prom`` file in its ``--collector.textfile.directory`` at each
scrape; a half-written file would be a scrape error, so the file is written beside its
final name and renamed over it (``os.replace`` is atomic within a directory). The figures
that survive a restart (visits, leads, cost, first-audio latency) come from the database,
all-time; process counters (connect failures, underruns, watchdog pings) start at zero
with each run, as Prometheus counters may.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from kiosk import __version__
from kiosk.conversation import State
from kiosk.leads import outbox as ob

FILENAME = "kiosk.prom"
FIRST_AUDIO_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
OUTBOX_KINDS = (*ob.LEAD_KINDS, *ob.MAIL_KINDS, *ob.DOC_KINDS)


@dataclass(frozen=True)
class Family:
    """One metric family: ``# HELP``, ``# TYPE`` and its samples (suffix, labels, value)."""

    name: str
    kind: str  # gauge | counter | histogram
    help: str
    samples: tuple[tuple[str, Mapping[str, str], float], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


def render(families: Iterable[Family]) -> str:
    """The text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for f in families:
        lines.append(f"# HELP {f.name} {f.help}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for suffix, labels, value in f.samples:
            label = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{f.name}{suffix}{'{' + label + '}' if label else ''} {_value(value)}")
    return "\n".join(lines) + "\n"


def gauge(name: str, help: str, value: float, **labels: str) -> Family:
    """A family of one gauge sample."""
    return Family(name, "gauge", help, (("", labels, value),))


def counter(name: str, help: str, values: Mapping[str, float] | float, label: str = "") -> Family:
    """A counter; ``values`` by the one ``label`` or a single value (``name`` ends in _total)."""
    if isinstance(values, Mapping):
        return Family(name, "counter", help, tuple(("", {label: k}, v) for k, v in sorted(values.items())))
    return Family(name, "counter", help, (("", {}, values),))


def histogram(name: str, help: str, values: Sequence[float], buckets: Sequence[float]) -> Family:
    """A cumulative histogram of ``values``."""
    samples: list[tuple[str, Mapping[str, str], float]] = [
        ("_bucket", {"le": _value(b)}, sum(v <= b for v in values)) for b in buckets
    ]
    samples += [("_bucket", {"le": "+Inf"}, len(values)), ("_sum", {}, sum(values)), ("_count", {}, len(values))]
    return Family(name, "histogram", help, tuple(samples))


@dataclass(frozen=True)
class Snapshot:
    """Everything the metrics show, gathered by the daemon (kiosk.runtime.fleet) at one moment."""

    kiosk_id: str
    up: bool
    state: str
    uptime_s: float
    visits_by_reason: Mapping[str, int] = field(default_factory=dict)
    leads: int = 0
    outbox: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (kind, state) -> rows
    last_success_at: str | None = None
    connect_failures: int = 0
    link_up: bool = True
    first_audio_ms: Sequence[float] = ()
    cost_usd: float = 0.0
    cost_today_usd: float = 0.0
    daily_budget_usd: float = 0.0
    underruns: int = 0
    capture_overflows: int = 0
    watchdog_pings: int = 0


def kiosk_families(s: Snapshot) -> list[Family]:
    """The kiosk's metric families (``config/grafana/kiosk-fleet.json`` charts them)."""
    last = datetime.fromisoformat(s.last_success_at).timestamp() if s.last_success_at else 0.0
    outbox_states = (ob.PENDING, ob.DEAD)
    return [
        gauge("kiosk_up", "1 while the kiosk daemon runs (0 written when it stops).", 1.0 if s.up else 0.0),
        gauge("kiosk_info", "Kiosk id and software version.", 1.0, kiosk_id=s.kiosk_id, version=__version__),
        Family(
            "kiosk_state",
            "gauge",
            "The kiosk state machine's state (1 for the current one).",
            tuple(("", {"state": st.value}, 1.0 if st.value == s.state else 0.0) for st in State),
        ),
        gauge("kiosk_uptime_seconds", "Seconds since the daemon started.", round(s.uptime_s, 1)),
        counter("kiosk_visits_total", "Visits by end reason (all records kept).", s.visits_by_reason, "reason"),
        counter("kiosk_leads_total", "Leads saved (all kept).", s.leads),
        Family(
            "kiosk_outbox_rows",
            "gauge",
            "Outbox rows waiting (pending) or given up on (dead), by kind.",
            tuple(
                ("", {"kind": k, "state": st}, s.outbox.get((k, st), 0)) for k in OUTBOX_KINDS for st in outbox_states
            ),
        ),
        gauge(
            "kiosk_last_sync_success_timestamp_seconds",
            "Unix time of the last successful delivery to the CRM or SMTP (0 = never).",
            last,
        ),
        counter("kiosk_realtime_connect_failures_total", "Failed Realtime connection attempts.", s.connect_failures),
        gauge("kiosk_realtime_link_up", "1 while the last Realtime connection attempt succeeded.", float(s.link_up)),
        histogram(
            "kiosk_first_audio_seconds",
            "Press to the first audible assistant audio, per visit.",
            [ms / 1000 for ms in s.first_audio_ms],
            FIRST_AUDIO_BUCKETS_S,
        ),
        counter("kiosk_cost_usd_total", "Realtime spending in US dollars (all usage kept).", round(s.cost_usd, 6)),
        gauge("kiosk_cost_today_usd", "Realtime spending of the current local day.", round(s.cost_today_usd, 6)),
        gauge("kiosk_budget_daily_usd", "The configured daily budget.", s.daily_budget_usd),
        counter("kiosk_audio_underruns_total", "Playback periods the jitter buffer ran dry.", s.underruns),
        counter("kiosk_capture_overflows_total", "Microphone chunks dropped (loop too slow).", s.capture_overflows),
        counter("kiosk_watchdog_pings_total", "WATCHDOG=1 pings sent to systemd.", s.watchdog_pings),
    ]


def metric_names(families: Iterable[Family]) -> set[str]:
    """Every series name a scrape sees (histograms with their suffixes)."""
    return {f.name + suffix for f in families for suffix, _, _ in f.samples}


def write_textfile(directory: Path, text: str, name: str = FILENAME) -> Path:
    """Replace ``directory/name`` with ``text`` atomically (readable by node_exporter: 0644)."""
    final = directory / name
    tmp = directory / f".{name}.{os.getpid()}.tmp"  # not *.prom: the collector never reads it
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "wb") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # the service's UMask=0077 would hide it from node_exporter
    os.replace(tmp, final)
    return final
