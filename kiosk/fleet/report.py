"""The lender's numbers per local day and in total (pure): ``kiosk report`` and the daily
stats document both come from :func:`build`.

Definitions (the README's "The lender's numbers" repeats them):

* visits: every press that counts (refused and offline ones too); median duration over them
* leads: leads saved in the day's visits; conversion = leads / visits
* consents declined: visits in which the visitor declined the consent question at least once
* cost: the day's spending as the daily budget counts it (table ``usage``); per lead = cost / leads
* offline minutes: time the kiosk showed OFFLINE; budget used = cost / ``cost.daily_max_usd``
* funnel: visits that got at least as far as each stage (their furthest stage is it or a later
  one); top topics: knowledge sections, by the visits that used them
"""

from __future__ import annotations

import csv
import io
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

from kiosk.fleet.visits import FUNNEL, STAGES, Stage, VisitRecord

TOP_TOPICS = 5
_DAYS = re.compile(r"^(\d{1,4})d$")


def day_range(since: str, today: date) -> list[str]:
    """The local days from ``since`` (``today``, ``7d`` = the last 7 days, or ``YYYY-MM-DD``) to today."""
    if since == "today":
        first = today
    elif m := _DAYS.match(since):
        first = today - timedelta(days=max(1, int(m.group(1))) - 1)
    else:
        try:
            first = date.fromisoformat(since)
        except ValueError:
            raise ValueError(f"--since {since!r}: use today, Nd (e.g. 7d) or YYYY-MM-DD") from None
        if first > today:
            raise ValueError(f"--since {since}: that day is still to come")
    return [(first + timedelta(days=i)).isoformat() for i in range((today - first).days + 1)]


@dataclass(frozen=True)
class DayStats:
    """One local day's figures (or the total over the report's days, ``day`` = "total")."""

    day: str
    visits: int
    median_duration_s: float | None
    end_reasons: dict[str, int]
    leads: int
    conversion: float | None
    consents_offered: int
    consents_declined: int
    cost_usd: float
    cost_per_lead_usd: float | None
    offline_min: float
    budget_used: float | None
    funnel: dict[str, int]
    top_topics: list[tuple[str, int]]
    first_audio_median_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (topics as ``{"title", "visits"}``)."""
        d = asdict(self)
        d["top_topics"] = [{"title": t, "visits": n} for t, n in self.top_topics]
        return d


@dataclass(frozen=True)
class Report:
    """The report over a run of local days."""

    kiosk_id: str
    days: list[DayStats]
    total: DayStats
    daily_budget_usd: float
    generated_at: str = field(default="")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "kiosk_id": self.kiosk_id,
            "from": self.days[0].day if self.days else None,
            "to": self.days[-1].day if self.days else None,
            "daily_budget_usd": self.daily_budget_usd,
            "generated_at": self.generated_at,
            "days": [d.as_dict() for d in self.days],
            "total": self.total.as_dict(),
        }


def _ratio(a: float, b: float) -> float | None:
    return None if not b else a / b


def _median(values: Sequence[float]) -> float | None:
    return None if not values else float(statistics.median(values))


def day_stats(
    day: str,
    visits: Sequence[VisitRecord],
    leads: int,
    cost_usd: float,
    offline_s: float,
    budget_usd: float,
) -> DayStats:
    """The figures of one day (or of several, for the total: pass the summed budget)."""
    topics: Counter[str] = Counter(t for v in visits for t in set(v.topics))
    audio = [v.first_audio_ms for v in visits if v.first_audio_ms is not None]
    return DayStats(
        day=day,
        visits=len(visits),
        median_duration_s=_median([v.duration_s for v in visits]),
        end_reasons=dict(sorted(Counter(v.end_reason for v in visits).items())),
        leads=leads,
        conversion=_ratio(leads, len(visits)),
        consents_offered=sum(v.consent_offers > 0 for v in visits),
        consents_declined=sum(v.consent_declines > 0 for v in visits),
        cost_usd=round(cost_usd, 4),
        cost_per_lead_usd=None if not leads else round(cost_usd / leads, 4),
        offline_min=round(offline_s / 60, 2),
        budget_used=_ratio(cost_usd, budget_usd),
        funnel={s.value: sum(STAGES.index(Stage(v.stage)) >= STAGES.index(s) for v in visits) for s in FUNNEL},
        top_topics=sorted(topics.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TOPICS],
        first_audio_median_ms=_median(audio),
    )


def build(
    kiosk_id: str,
    days: Sequence[str],
    visits: Sequence[VisitRecord],
    leads: Mapping[str, int],
    cost: Mapping[str, float],
    state_s: Mapping[str, Mapping[str, float]],
    daily_budget_usd: float,
    generated_at: str = "",
) -> Report:
    """Group the visits by local day and add up each day and the whole run."""
    by_day: dict[str, list[VisitRecord]] = {d: [] for d in days}
    for v in visits:
        if v.day in by_day:
            by_day[v.day].append(v)
    rows = [
        day_stats(
            d,
            by_day[d],
            leads.get(d, 0),
            cost.get(d, 0.0),
            state_s.get(d, {}).get("offline", 0.0),
            daily_budget_usd,
        )
        for d in days
    ]
    total = day_stats(
        "total",
        [v for d in days for v in by_day[d]],
        sum(leads.get(d, 0) for d in days),
        sum(cost.get(d, 0.0) for d in days),
        sum(state_s.get(d, {}).get("offline", 0.0) for d in days),
        daily_budget_usd * len(days),
    )
    return Report(kiosk_id, rows, total, daily_budget_usd, generated_at)


# -- text and CSV ---------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _money(x: float | None) -> str:
    return "-" if x is None else f"${x:,.2f}"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}s"


def render_text(report: Report) -> str:
    """A table for a terminal: one line per day and the total, then reasons, funnel, topics."""
    head = f"{'day':<10} {'visits':>6} {'median':>7} {'leads':>5} {'conv':>5} {'declined':>8} "
    head += f"{'cost':>9} {'per lead':>9} {'offline':>8} {'budget':>6}"
    lines = [f"kiosk {report.kiosk_id}", head]
    for d in [*report.days, report.total]:
        lines.append(
            f"{d.day:<10} {d.visits:>6} {_secs(d.median_duration_s):>7} {d.leads:>5} {_pct(d.conversion):>5} "
            f"{d.consents_declined:>8} {_money(d.cost_usd):>9} {_money(d.cost_per_lead_usd):>9} "
            f"{d.offline_min:>6.1f}m {_pct(d.budget_used):>6}"
        )
    t = report.total
    lines.append("end reasons: " + (", ".join(f"{r} {n}" for r, n in t.end_reasons.items()) or "-"))
    lines.append("funnel:      " + " > ".join(f"{Stage(s).value} {n}" for s, n in t.funnel.items()))
    lines.append("top topics:  " + ("; ".join(f"{title} ({n})" for title, n in t.top_topics) or "-"))
    return "\n".join(lines)


def render_csv(report: Report) -> str:
    """One row per day and a ``total`` row; end reasons as ``end_<reason>`` columns."""
    reasons = sorted(report.total.end_reasons)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        [
            "day", "visits", "median_duration_s", "leads", "conversion", "consents_declined", "cost_usd",
            "cost_per_lead_usd", "offline_min", "budget_used", *[f"end_{r}" for r in reasons], "top_topics",
        ]
    )  # fmt: skip
    for d in [*report.days, report.total]:
        w.writerow(
            [
                d.day, d.visits, _num(d.median_duration_s), d.leads, _num(d.conversion), d.consents_declined,
                d.cost_usd, _num(d.cost_per_lead_usd), d.offline_min, _num(d.budget_used),
                *[d.end_reasons.get(r, 0) for r in reasons], "; ".join(t for t, _ in d.top_topics),
            ]
        )  # fmt: skip
    return out.getvalue()


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"
