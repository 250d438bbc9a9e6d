"""What the kiosk tells the lender's systems through the signed sync, besides leads (pure).

* The daily stats document (``kiosk/schemas/daily-stats.schema.json``): one finished local
  day's funnel, leads, cost and availability. No personal data: counts, stage names,
  knowledge section titles. Id ``<kiosk_id>/<day>``: a receiver stores each day once.
* The heartbeat (``kiosk/schemas/heartbeat.schema.json``): health, version, outbox backlog,
  last error, the link and today's counts, every ``fleet.heartbeat_s``. Booths sit behind
  NAT, so the kiosk calls out; nothing calls in. Only the newest heartbeat waits in the
  outbox: a new one replaces any not yet delivered.

Both are outbox rows whose payload is the request body itself, POSTed to ``sync.endpoint``
with the same token, timestamp and HMAC signature as lead batches, ``Idempotency-Key`` =
the document's id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

from kiosk import __version__
from kiosk.fleet.report import DayStats
from kiosk.leads.outbox import DAILY_KIND, HEARTBEAT_KIND

DAILY_SCHEMA = "kiosk.daily-stats/1"
HEARTBEAT_SCHEMA = "kiosk.heartbeat/1"
KINDS = {DAILY_KIND: "daily-stats.schema.json", HEARTBEAT_KIND: "heartbeat.schema.json"}


def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of an outbox document kind, from the package's data (never the checkout)."""
    text = (files("kiosk") / "schemas" / KINDS[kind]).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def daily_document(
    kiosk_id: str, stats: DayStats, state_s: Mapping[str, float], daily_budget_usd: float, generated_at: str
) -> dict[str, Any]:
    """One finished local day (``stats`` from :func:`kiosk.fleet.report.day_stats`)."""
    return {
        "schema": DAILY_SCHEMA,
        "id": f"{kiosk_id}/{stats.day}",
        "kiosk_id": kiosk_id,
        "app_version": __version__,
        "generated_at": generated_at,
        "day": stats.day,
        "visits": stats.visits,
        "median_duration_s": stats.median_duration_s,
        "end_reasons": stats.end_reasons,
        "funnel": stats.funnel,
        "leads": stats.leads,
        "conversion": stats.conversion,
        "consents_offered": stats.consents_offered,
        "consents_declined": stats.consents_declined,
        "cost_usd": stats.cost_usd,
        "cost_per_lead_usd": stats.cost_per_lead_usd,
        "daily_budget_usd": daily_budget_usd,
        "budget_used": stats.budget_used,
        "offline_min": round(state_s.get("offline", 0.0) / 60, 2),
        "unavailable_min": round(state_s.get("unavailable", 0.0) / 60, 2),
        "error_min": round(state_s.get("error", 0.0) / 60, 2),
        "first_audio_median_ms": stats.first_audio_median_ms,
        "top_topics": [{"title": t, "visits": n} for t, n in stats.top_topics],
    }


def health(state: str, link_up: bool, dead_rows: int) -> str:
    """``error`` (the kiosk is in ERROR), ``degraded`` (link failing, offline or dead-lettered
    rows waiting for a person), else ``ok``."""
    if state == "error":
        return "error"
    if not link_up or state == "offline" or dead_rows:
        return "degraded"
    return "ok"


def heartbeat_document(
    kiosk_id: str,
    sent_at: str,
    *,
    state: str,
    uptime_s: float,
    outbox: Mapping[tuple[str, str], int],
    last_sync_at: str | None,
    last_error: str | None,
    last_error_at: str | None,
    link_up: bool,
    link_failures: int,
    today: Mapping[str, float | int],
    budget_left_usd: float,
) -> dict[str, Any]:
    """The kiosk's health now (no personal data: error texts are already redacted)."""
    kinds = sorted({k for k, _ in outbox})
    backlog = {k: {"pending": outbox.get((k, "pending"), 0), "dead": outbox.get((k, "dead"), 0)} for k in kinds}
    dead = sum(v["dead"] for v in backlog.values())
    return {
        "schema": HEARTBEAT_SCHEMA,
        "id": f"{kiosk_id}/heartbeat/{sent_at}",
        "kiosk_id": kiosk_id,
        "app_version": __version__,
        "sent_at": sent_at,
        "health": health(state, link_up, dead),
        "state": state,
        "uptime_s": round(uptime_s, 1),
        "outbox": backlog,
        "last_sync_at": last_sync_at,
        "last_error": None if not last_error else {"at": last_error_at, "message": last_error[:300]},
        "link": {"up": link_up, "failures": link_failures},
        "today": dict(today),
        "budget_left_usd": round(budget_left_usd, 4),
    }
