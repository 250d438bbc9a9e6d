"""``kiosk report --html``: one self-contained page (pure).

Inline CSS and inline SVG only: no scripts, no fonts, images or styles from anywhere else,
so the file can be mailed, archived or opened on a machine without network. Three charts
(each an ``<svg data-chart=...>``): visits and leads per day, the drop-off funnel, and cost
per lead per day; then the figures as tables.
"""

from __future__ import annotations

from html import escape

from kiosk.fleet.report import DayStats, Report

VISITS_COLOUR, LEADS_COLOUR, COST_COLOUR, FUNNEL_COLOUR = "#2b6cb0", "#dd6b20", "#2f855a", "#6b46c1"
CHARTS = ("visits-leads", "funnel", "cost-per-lead")
_W, _H, _PAD_L, _PAD_B, _PAD_T = 640, 240, 48, 40, 16

_CSS = """
body{font:14px/1.4 sans-serif;margin:24px;color:#1a202c;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.tiles{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.tile{border:1px solid #cbd5e0;border-radius:6px;padding:8px 12px;min-width:110px}
.tile b{display:block;font-size:20px}
table{border-collapse:collapse}td,th{border-bottom:1px solid #e2e8f0;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
svg text{font:11px sans-serif;fill:#2d3748}.legend{margin:4px 0}.legend span{margin-right:16px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
"""


def _money(x: float | None) -> str:
    return "–" if x is None else f"${x:,.2f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1.0
    step = 10.0 ** len(str(int(value))) / 10
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= m * step:
            return m * step
    return 10.0 * step


def _axis(top: float, money: bool) -> str:
    parts = []
    for i in range(5):
        v = top * i / 4
        y = _H - _PAD_B - (_H - _PAD_B - _PAD_T) * i / 4
        label = f"${v:,.2f}" if money else f"{v:g}"
        parts.append(f'<line x1="{_PAD_L}" x2="{_W}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>')
        parts.append(f'<text x="{_PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>')
    return "".join(parts)


def _bars(days: list[DayStats], series: list[tuple[str, list[float | None]]], name: str, label: str) -> str:
    """Grouped vertical bars, one group per day; ``None`` draws no bar."""
    values = [v for _, vs in series for v in vs if v is not None]
    money = name == "cost-per-lead"
    top = _nice_max(max(values, default=0.0))
    inner_h = _H - _PAD_B - _PAD_T
    group = (_W - _PAD_L) / max(1, len(days))
    bar = max(1.0, group * 0.8 / len(series))
    out = [
        f'<svg data-chart="{name}" role="img" aria-label="{escape(label)}" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}">',
        _axis(top, money),
    ]
    for i, d in enumerate(days):
        x0 = _PAD_L + i * group + group * 0.1
        for j, (colour, vs) in enumerate(series):
            v = vs[i]
            if v is None or v <= 0:
                continue
            h = inner_h * v / top
            out.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{_H - _PAD_B - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(d.day)}: {v:g}</title></rect>'
            )
        if len(days) <= 14 or i % max(1, len(days) // 10) == 0:
            x = x0 + group * 0.4
            out.append(f'<text x="{x:.1f}" y="{_H - _PAD_B + 14}" text-anchor="middle">{escape(d.day[5:])}</text>')
    out.append("</svg>")
    return "".join(out)


def funnel_svg(total: DayStats) -> str:
    """Horizontal bars: visits reaching each stage, with the share of all visits."""
    steps = list(total.funnel.items())
    row = 30
    height = _PAD_T + row * len(steps) + 8
    label_w, width = 130, _W - 130 - 80
    top = max(total.visits, 1)
    out = [
        f'<svg data-chart="funnel" role="img" aria-label="Drop-off funnel" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}">'
    ]
    for i, (stage, n) in enumerate(steps):
        y = _PAD_T + i * row
        w = width * n / top
        out.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{escape(stage.replace("_", " "))}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 4}" width="{max(w, 0.0):.1f}" height="20" fill="{FUNNEL_COLOUR}"/>')
        share = _pct(n / top if total.visits else None)
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 17}">{n} ({share})</text>')
    out.append("</svg>")
    return "".join(out)


def _legend(items: list[tuple[str, str]]) -> str:
    spans = "".join(f'<span><i class="sw" style="background:{c}"></i>{escape(t)}</span>' for c, t in items)
    return f'<div class="legend">{spans}</div>'


def _tile(label: str, value: str) -> str:
    return f'<div class="tile">{escape(label)}<b>{escape(value)}</b></div>'


def _table(report: Report) -> str:
    head = "<tr><th>day</th><th>visits</th><th>median</th><th>leads</th><th>conversion</th><th>declined</th>"
    head += "<th>cost</th><th>per lead</th><th>offline</th><th>budget used</th></tr>"
    rows = []
    for d in [*report.days, report.total]:
        median = "–" if d.median_duration_s is None else f"{d.median_duration_s:.0f} s"
        rows.append(
            f"<tr><td>{escape(d.day)}</td><td>{d.visits}</td><td>{median}</td><td>{d.leads}</td>"
            f"<td>{_pct(d.conversion)}</td><td>{d.consents_declined}</td><td>{_money(d.cost_usd)}</td>"
            f"<td>{_money(d.cost_per_lead_usd)}</td><td>{d.offline_min:.1f} min</td><td>{_pct(d.budget_used)}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def render_html(report: Report) -> str:
    """The whole page."""
    t, days = report.total, report.days
    span = f"{days[0].day} to {days[-1].day}" if days else "no days"
    reasons = "".join(f"<tr><td>{escape(r)}</td><td>{n}</td></tr>" for r, n in t.end_reasons.items())
    topics = "".join(f"<tr><td>{escape(title)}</td><td>{n}</td></tr>" for title, n in t.top_topics)
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            f"<title>Kiosk {escape(report.kiosk_id)}: {escape(span)}</title><style>{_CSS}</style></head><body>",
            f"<h1>Kiosk {escape(report.kiosk_id)}</h1><div>{escape(span)}"
            + (f", generated {escape(report.generated_at)}" if report.generated_at else "")
            + "</div>",
            '<div class="tiles">',
            _tile("visits", str(t.visits)),
            _tile("leads", str(t.leads)),
            _tile("conversion", _pct(t.conversion)),
            _tile("consents declined", str(t.consents_declined)),
            _tile("cost", _money(t.cost_usd)),
            _tile("cost per lead", _money(t.cost_per_lead_usd)),
            _tile("offline", f"{t.offline_min:.0f} min"),
            _tile("budget used", _pct(t.budget_used)),
            "</div>",
            "<h2>Visits and leads per day</h2>",
            _legend([(VISITS_COLOUR, "visits"), (LEADS_COLOUR, "leads")]),
            _bars(
                days,
                [(VISITS_COLOUR, [float(d.visits) for d in days]), (LEADS_COLOUR, [float(d.leads) for d in days])],
                "visits-leads",
                "Visits and leads per day",
            ),
            "<h2>Drop-off funnel</h2>",
            funnel_svg(t),
            "<h2>Cost per lead</h2>",
            _bars(days, [(COST_COLOUR, [d.cost_per_lead_usd for d in days])], "cost-per-lead", "Cost per lead per day"),
            "<h2>Per day</h2>",
            _table(report),
            "<h2>End reasons</h2>",
            f"<table>{reasons or '<tr><td>none</td></tr>'}</table>",
            "<h2>Top topics</h2>",
            f"<table>{topics or '<tr><td>none</td></tr>'}</table>",
            "</body></html>\n",
        ]
    )
