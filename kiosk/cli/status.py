"""``kiosk status``: what the running kiosk is doing, for ops at a terminal.

Two sources: the daemon's status file (state, start, last visit, last error, the Realtime
link's health; see :class:`kiosk.runtime.systemd.StatusFile`) and the database, opened
read-only (leads waiting for upload, leads given up on, the last successful upload, and
today's visits, leads and spending against the daily budget). Exit status: 0 when the
daemon runs and the database answers, 69 (EX_UNAVAILABLE) when either is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from kiosk.config import Settings, load_settings
from kiosk.fleet import records
from kiosk.leads import outbox as ob
from kiosk.runtime.systemd import boot_id, boottime_s, read_status


@dataclass(frozen=True)
class Report:
    """Everything ``kiosk status`` shows."""

    running: bool
    state: str
    uptime_s: float | None
    pid: int | None
    started_at: str | None
    last_visit: str
    last_error: str
    pending_leads: int | None
    dead_leads: int | None
    last_sync: str | None
    last_sync_error: str | None
    visits_today: int | None
    leads_today: int | None
    budget_left_usd: float | None
    link: str
    problems: tuple[str, ...]


def outbox_status(db: Path) -> ob.SyncStatus:
    """The outbox as the daemon's ``STATUS=`` line counts it, read-only; raises sqlite3.Error / OSError."""
    conn = ob.open_read_only(db)
    try:
        return ob.sync_status(conn)
    finally:
        conn.close()


def today_figures(db: Path, day: str) -> records.Today | None:
    """Today's visits, leads and spending, read-only (None before the first visit record)."""
    conn = ob.open_read_only(db)
    try:
        return records.today(conn, day) if records.has_visits(conn) else None
    finally:
        conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to the service user
        return True
    return True


def collect(settings: Settings) -> Report:
    """Read the status file and the database into one report."""
    problems: list[str] = []
    path = settings.service.status_file
    data: dict[str, Any] = read_status(path) or {}
    if not data:
        problems.append(f"no status file at {path}: the daemon has not run here (or service.status_file differs)")
    pid = data.get("pid") if isinstance(data.get("pid"), int) else None
    same_boot = bool(data) and data.get("boot_id") == boot_id()
    running = pid is not None and same_boot and data.get("state") != "stopped" and _alive(pid)
    if data and not running:
        problems.append(f"the daemon is not running (last state {data.get('state', '?')})")
    uptime = None
    if running and isinstance(data.get("started_boottime_s"), int | float):
        uptime = max(0.0, boottime_s() - float(data["started_boottime_s"]))
    try:
        counts: ob.SyncStatus | None = outbox_status(settings.store.path)
        today = today_figures(settings.store.path, date.today().isoformat())
    except (sqlite3.Error, OSError) as exc:
        counts, today = None, None
        problems.append(f"database {settings.store.path} unavailable: {exc}")
    return Report(
        running=running,
        state=str(data.get("state", "unknown")) if running else "not running",
        uptime_s=uptime,
        pid=pid if running else None,
        started_at=data.get("started_at"),
        last_visit=_last_visit(data),
        last_error=_last_error(data),
        pending_leads=counts.pending_leads if counts else None,
        dead_leads=counts.dead_leads if counts else None,
        last_sync=counts.last_success_at if counts else None,
        last_sync_error=_sync_error(counts),
        visits_today=today.visits if today else None,
        leads_today=today.leads if today else None,
        budget_left_usd=round(settings.cost.daily_max_usd - today.cost_usd, 4) if today else None,
        link=_link(data) if running else "unknown (not running)",
        problems=tuple(problems),
    )


def _link(d: dict[str, Any]) -> str:
    if d.get("link_up", True):
        return "ok"
    since = d.get("link_down_since") or "?"
    return f"failing since {since} ({d.get('link_failures', '?')} failed attempts)"


def _sync_error(counts: ob.SyncStatus | None) -> str | None:
    if counts is None or not counts.last_error:
        return None
    return f"{counts.last_error_at or '?'}: {counts.last_error}"


def _last_visit(d: dict[str, Any]) -> str:
    if "last_session_ended_at" in d:
        dur = d.get("last_session_duration_s")
        length = f", {float(dur):.0f} s" if isinstance(dur, int | float) else ""
        return f"ended {d['last_session_ended_at']} ({d.get('last_session_reason', '?')}{length})"
    if "last_session_started_at" in d:
        return f"started {d['last_session_started_at']} (in progress or cut off)"
    return "none"


def _last_error(d: dict[str, Any]) -> str:
    if "last_error" not in d:
        return "none"
    return f"{d.get('last_error_at', '?')}: {d['last_error']}"


def uptime_text(seconds: float | None) -> str:
    """``3d 4h 05m`` style."""
    if seconds is None:
        return "-"
    m, _ = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    return (f"{d}d " if d else "") + f"{h}h {m:02d}m"


def render(r: Report) -> str:
    """The human-readable report."""
    pending = "?" if r.pending_leads is None else str(r.pending_leads)
    dead = "?" if r.dead_leads is None else str(r.dead_leads)
    lines = [
        f"state:         {r.state}" + (f" (pid {r.pid})" if r.pid else ""),
        f"uptime:        {uptime_text(r.uptime_s)}" + (f" (since {r.started_at})" if r.running else ""),
        f"last visit:    {r.last_visit}",
        f"pending leads: {pending} waiting for upload, {dead} given up (dead)",
        f"last sync:     {r.last_sync or 'never'}"
        + (f" (last sync error {r.last_sync_error})" if r.last_sync_error else ""),
        f"last error:    {r.last_error}",
        f"today:         {_count(r.visits_today)} visits, {_count(r.leads_today)} leads, budget left "
        + ("?" if r.budget_left_usd is None else f"${r.budget_left_usd:,.2f}"),
        f"realtime link: {r.link}",
    ]
    lines += [f"problem:       {p}" for p in r.problems]
    return "\n".join(lines)


def _count(n: int | None) -> str:
    return "?" if n is None else str(n)


def register(sub: Any) -> None:
    """Add ``kiosk status`` to the CLI."""
    p: argparse.ArgumentParser = sub.add_parser(
        "status", help="state, uptime, last visit, pending leads, errors, today's visits, budget, link"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Print the report; 0 when the daemon runs and the database answers, else 69."""
    report = collect(load_settings(args.config).settings)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(render(report))
    return 0 if not report.problems else os.EX_UNAVAILABLE
