"""``kiosk report``: the lender's numbers from the visit records, per local day and in total.

Reads the database read-only, so it runs beside the daemon. Formats: a table (default),
``--csv``, ``--json`` or ``--html FILE`` (one self-contained page with inline SVG charts).
Exit status: 0; 2 for a bad ``--since``; 69 when the database is missing or unreadable.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

from kiosk.config import Settings, load_settings
from kiosk.errors import StoreError, UsageError
from kiosk.fleet import records
from kiosk.fleet.report import Report, build, day_range, render_csv, render_text
from kiosk.leads import outbox as ob
from kiosk.leads.records import utc_now


def collect(settings: Settings, since: str, today: date) -> Report:
    """The report over ``since``..``today`` (local days); ValueError for a bad ``since``,
    StoreError when the database cannot be read."""
    days = day_range(since, today)
    try:
        conn = ob.open_read_only(settings.store.path)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"database {settings.store.path} unavailable: {exc}") from None
    try:
        if not records.has_visits(conn):
            raise StoreError(f"database {settings.store.path} has no visit records yet (start the kiosk once)")
        first, last = days[0], days[-1]
        return build(
            settings.kiosk_id,
            days,
            records.visits_between(conn, first, last),
            records.leads_by_day(conn, first, last),
            records.cost_by_day(conn, first, last),
            records.state_seconds_by_day(conn, first, last),
            settings.cost.daily_max_usd,
            generated_at=utc_now(),
        )
    except sqlite3.Error as exc:
        raise StoreError(f"database {settings.store.path} unreadable: {exc}") from None
    finally:
        conn.close()


def register(sub: Any) -> None:
    """Add ``kiosk report`` to the CLI."""
    p: argparse.ArgumentParser = sub.add_parser(
        "report", help="visits, leads, conversion, cost per lead, offline time: per day and in total"
    )
    p.add_argument("--since", default="7d", help="today, Nd (the last N days) or YYYY-MM-DD (default: 7d)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV: one row per day and a total row")
    fmt.add_argument("--json", action="store_true", help="JSON: every figure, per day and in total")
    fmt.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained page with charts to FILE")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Print (or write) the report."""
    settings = load_settings(args.config).settings
    try:
        report = collect(settings, args.since, date.today())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    elif args.csv:
        print(render_csv(report), end="")
    elif args.html:
        # Here, not at the top: the parser imports this module for every command, `kiosk run` too.
        from kiosk.fleet.html import render_html

        args.html.write_text(render_html(report), encoding="utf-8")
        print(f"report written to {args.html}")
    else:
        print(render_text(report))
    return 0
