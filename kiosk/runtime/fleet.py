"""The daemon's duties to a fleet: the Prometheus textfile, the heartbeat and the daily stats.

Past one machine the kiosk does not grow its own dashboard: it feeds what a fleet already
runs. Every ``fleet.metrics_interval_s`` the metrics file is rewritten (node_exporter's
textfile collector); every ``fleet.heartbeat_s`` a heartbeat is queued for the signed sync,
and every finished local day (also days missed while the kiosk was off, up to a week back)
gets its stats document queued. Probes are read on the event loop; the database work runs
in a worker thread on this duty's own connection.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta

from kiosk.config import Settings
from kiosk.errors import StoreError
from kiosk.fleet import documents, prom, records
from kiosk.fleet.link import LinkHealth
from kiosk.fleet.report import day_stats
from kiosk.leads.records import utc_now
from kiosk.leads.store import Store
from kiosk.logs import event

log = logging.getLogger(__name__)

DAILY_CHECK_S = 600.0  # a finished day is queued within ten minutes of local midnight
DAILY_LOOKBACK_DAYS = 7  # days missed while the kiosk was off are sent, up to a week back


@dataclass
class Probes:
    """What the running kiosk shows the fleet duties (read on the event loop)."""

    state: Callable[[], str]
    link: LinkHealth
    underruns: Callable[[], int] = lambda: 0
    overflows: Callable[[], int] = lambda: 0
    watchdog_pings: Callable[[], int] = lambda: 0
    last_error: Callable[[], tuple[str | None, str | None]] = lambda: (None, None)  # (message, at)


class FleetDuties:
    """Metrics, heartbeat and daily documents for one daemon run."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        probes: Probes,
        *,
        today: Callable[[], str],
        sync_on: bool,
        kick: Callable[[], None] = lambda: None,
        now_iso: Callable[[], str] = utc_now,
    ) -> None:
        self.s = settings
        self.store = store  # this duty's own connection
        self.probes = probes
        self.today = today  # the local day
        self.sync_on = sync_on  # an endpoint, token and secret are configured
        self.kick = kick  # ask the syncer for a pass now
        self.now_iso = now_iso
        self._started: float | None = None
        self._failing: dict[str, str] = {}  # duty -> last error (logged once per new error)

    def uptime(self) -> float:
        """Seconds since :meth:`run` started."""
        loop = asyncio.get_running_loop()
        if self._started is None:
            self._started = loop.time()
        return loop.time() - self._started

    # -- the three duties (each in a worker thread) -------------------------------------------

    def snapshot(self, up: bool, uptime_s: float, state: str, extra: dict[str, int]) -> prom.Snapshot:
        """Database figures plus the probes' values (read before, on the loop)."""
        conn = self.store.conn
        t = records.totals(conn)
        day = records.today(conn, self.today())
        return prom.Snapshot(
            kiosk_id=self.s.kiosk_id,
            up=up,
            state=state,
            uptime_s=uptime_s,
            visits_by_reason=t.visits_by_reason,
            leads=t.leads,
            outbox=t.outbox,
            last_success_at=t.last_success_at,
            connect_failures=extra["connect_failures"],
            link_up=bool(extra["link_up"]),
            first_audio_ms=t.first_audio_ms,
            cost_usd=t.cost_usd,
            cost_today_usd=day.cost_usd,
            daily_budget_usd=self.s.cost.daily_max_usd,
            underruns=extra["underruns"],
            capture_overflows=extra["overflows"],
            watchdog_pings=extra["watchdog_pings"],
        )

    def write_metrics(self, snap: prom.Snapshot) -> None:
        """Render and atomically replace the textfile."""
        assert self.s.fleet.metrics_dir is not None
        prom.write_textfile(self.s.fleet.metrics_dir, prom.render(prom.kiosk_families(snap)))

    def heartbeat(
        self, uptime_s: float, state: str, link_up: bool, failures: int, error: tuple[str | None, str | None]
    ) -> dict[str, object]:
        """Build and queue a heartbeat; returns it."""
        conn = self.store.conn
        t = records.totals(conn)
        day = records.today(conn, self.today())
        doc = documents.heartbeat_document(
            self.s.kiosk_id,
            self.now_iso(),
            state=state,
            uptime_s=uptime_s,
            outbox={k: n for k, n in t.outbox.items() if k[1] in ("pending", "dead")},
            last_sync_at=t.last_success_at,
            last_error=error[0],
            last_error_at=error[1],
            link_up=link_up,
            link_failures=failures,
            today={"visits": day.visits, "leads": day.leads, "cost_usd": round(day.cost_usd, 4)},
            budget_left_usd=self.s.cost.daily_max_usd - day.cost_usd,
        )
        records.queue_heartbeat(self.store, str(doc["id"]), doc)
        return doc

    def queue_daily_documents(self) -> list[str]:
        """Queue the stats document of every finished day not sent yet; returns their days."""
        today = date.fromisoformat(self.today())
        first = (today - timedelta(days=DAILY_LOOKBACK_DAYS)).isoformat()
        conn = self.store.conn
        queued = []
        for day in records.days_without_document(conn, first, today.isoformat()):
            state_s = records.state_seconds_by_day(conn, day, day).get(day, {})
            stats = day_stats(
                day,
                records.visits_between(conn, day, day),
                records.leads_by_day(conn, day, day).get(day, 0),
                records.cost_by_day(conn, day, day).get(day, 0.0),
                state_s.get("offline", 0.0),
                self.s.cost.daily_max_usd,
            )
            doc = documents.daily_document(self.s.kiosk_id, stats, state_s, self.s.cost.daily_max_usd, self.now_iso())
            if records.queue_daily(self.store, day, doc):
                queued.append(day)
        return queued

    # -- the loop ------------------------------------------------------------------------------

    def _extra(self) -> dict[str, int]:
        p = self.probes
        return {
            "connect_failures": p.link.failures,
            "link_up": int(p.link.up),
            "underruns": p.underruns(),
            "overflows": p.overflows(),
            "watchdog_pings": p.watchdog_pings(),
        }

    async def metrics_once(self, up: bool = True) -> None:
        """Write the metrics file now (no-op without ``fleet.metrics_dir``)."""
        if self.s.fleet.metrics_dir is None:
            return
        uptime, state, extra = self.uptime(), self.probes.state(), self._extra()
        await self._guard("metrics", lambda: self.write_metrics(self.snapshot(up, uptime, state, extra)))

    async def heartbeat_once(self) -> None:
        """Queue a heartbeat and ask for a sync pass."""
        p = self.probes
        args = (self.uptime(), p.state(), p.link.up, p.link.failures, p.last_error())
        if await self._guard("heartbeat", lambda: self.heartbeat(*args)):
            self.kick()

    async def daily_once(self) -> None:
        """Queue finished days' documents and ask for a sync pass when there were any."""
        queued: list[str] = []
        if await self._guard("daily_stats", lambda: queued.extend(self.queue_daily_documents())) and queued:
            days = ", ".join(queued)
            log.info("daily stats queued for %s", days, extra=event("daily_stats_queued", days=len(queued)))
            self.kick()

    async def run(self) -> None:
        """Until cancelled: each duty at its own interval."""
        loop = asyncio.get_running_loop()
        self.uptime()
        f = self.s.fleet
        duties: list[tuple[float, Callable[[], Awaitable[None]]]] = []
        if f.metrics_dir is not None:
            duties.append((f.metrics_interval_s, self.metrics_once))
        if self.sync_on and f.heartbeat_s > 0:
            duties.append((f.heartbeat_s, self.heartbeat_once))
        if self.sync_on and f.daily_stats:
            duties.append((DAILY_CHECK_S, self.daily_once))
        if not duties:
            return
        due = [loop.time()] * len(duties)
        while True:
            for i, (every, duty) in enumerate(duties):
                if loop.time() >= due[i]:
                    due[i] = loop.time() + every
                    await duty()
            await asyncio.sleep(max(0.0, min(due) - loop.time()))

    async def close(self) -> None:
        """The daemon stops: the metrics say so (``kiosk_up 0``)."""
        await self.metrics_once(up=False)

    async def _guard(self, duty: str, work: Callable[[], object]) -> bool:
        """Run ``work`` in a thread; a failure is logged (once per new error), never raised."""
        try:
            await asyncio.to_thread(work)
        except (OSError, StoreError, sqlite3.Error) as exc:
            text = f"{type(exc).__name__}: {exc}"
            if self._failing.get(duty) != text:
                self._failing[duty] = text
                log.warning("%s failed: %s", duty, text, extra=event("fleet_error", duty=duty))
            return False
        self._failing.pop(duty, None)
        return True
