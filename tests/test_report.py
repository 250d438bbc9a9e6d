"""The lender's numbers end to end: every shipped scenario runs against the simulator into
one database (as a day at the booth), then ``kiosk report`` counts them, its HTML page is
opened in headless Chromium, the daemon's fleet duties write the metrics file promtool
checks, and the daily stats document and a heartbeat travel the signed sync to the
reference receiver and validate against their schemas."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import sqlite3
import struct
import subprocess
import zlib
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kiosk.cli.main import main
from kiosk.config import load_settings
from kiosk.fleet import documents, html
from kiosk.fleet.link import LinkHealth
from kiosk.leads.outbox import DAILY_KIND, HEARTBEAT_KIND
from kiosk.leads.store import Store
from kiosk.runtime.fleet import FleetDuties, Probes
from kiosk.sim.demo import run_demo
from tests.synckit import ManualClock, make_syncer, serve_receiver, sync_settings
from tests.toolkit import CHECKOUT_CONFIG

# budget_spent last: it spends the day's budget, which would refuse the others.
SCENARIOS = ("happy_path", "interrupt", "consent_retry", "walk_away", "network_down", "budget_spent")
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def booth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A day at the booth: every scenario, one after the other, into one database."""
    workdir = tmp_path_factory.mktemp("booth")
    for name in SCENARIOS:
        out = io.StringIO()
        result = asyncio.run(run_demo(name, workdir, speed=10.0, out=out, config=CHECKOUT_CONFIG))
        assert result.ok, out.getvalue()
    yield workdir / "kiosk.db"


@pytest.fixture
def env(booth: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KIOSK_STORE__PATH", str(booth))
    return booth


def report_json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["--config", str(CHECKOUT_CONFIG), "report", "--since", "today", "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_report_counts_every_scenario(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = report_json(capsys)
    (day,) = report["days"]
    total = report["total"]
    assert day["day"] == date.today().isoformat()
    assert {k: v for k, v in day.items() if k != "day"} == {k: v for k, v in total.items() if k != "day"}
    # happy_path, interrupt, consent_retry and network_down's second visit end by the button;
    # walk_away by silence; network_down's first press finds the service down; budget_spent's
    # press is refused.
    assert total["visits"] == 7
    assert total["end_reasons"] == {"button": 4, "idle": 1, "offline": 1, "unavailable": 1}
    assert total["leads"] == 2 and total["conversion"] == pytest.approx(2 / 7)
    assert (total["consents_offered"], total["consents_declined"]) == (2, 1)  # consent_retry said no first
    assert total["funnel"] == {"pressed": 7, "greeted": 5, "asked": 4, "ran_numbers": 2, "consent_offered": 2,
                               "lead_saved": 2, "call_scheduled": 0}  # fmt: skip
    db = sqlite3.connect(env)
    spent = db.execute("SELECT sum(cost_usd) FROM usage WHERE day = ?", (date.today().isoformat(),)).fetchone()[0]
    db.close()
    assert spent > 50.0  # budget_spent's earlier visitors, and these
    assert total["cost_usd"] == pytest.approx(spent, abs=1e-4)
    assert total["cost_per_lead_usd"] == pytest.approx(spent / 2, abs=1e-3)
    assert total["budget_used"] == pytest.approx(spent / 50.0, abs=1e-4)
    assert total["offline_min"] > 0  # network_down showed OFFLINE until the network returned
    assert 0 < total["median_duration_s"] < 30 and total["first_audio_median_ms"] > 0
    # The CSV and the table say the same.
    assert main(["--config", str(CHECKOUT_CONFIG), "report", "--since", "today", "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[-1].startswith("total,7,") and ",4,1,1,1," in rows[-1]
    assert main(["--config", str(CHECKOUT_CONFIG), "report", "--since", "today"]) == 0
    assert "end reasons: button 4, idle 1, offline 1, unavailable 1" in capsys.readouterr().out


def test_report_refuses_a_bad_since(env: Path) -> None:
    assert main(["--config", str(CHECKOUT_CONFIG), "report", "--since", "next week"]) == 2


# -- the HTML page in a real browser ------------------------------------------------------------


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) pixels) of an 8-bit, non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and interlace == 0 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, a + b - c][f] if f < 4 else 0
            if f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line) if bpp == 3 else bytes(v for j, v in enumerate(line) if j % 4 != 3))
        prev = line
    return width, height, rows


def colour(hex_rgb: str) -> bytes:
    return bytes.fromhex(hex_rgb.lstrip("#"))


def test_the_html_report_renders_in_chromium_with_its_charts(env: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: scripts/bootstrap installs Debian's chromium package"
    page = tmp_path / "report.html"
    assert main(["--config", str(CHECKOUT_CONFIG), "report", "--since", "7d", "--html", str(page)]) == 0
    text = page.read_text()
    for forbidden in ("<script", "http:", "https:", "src=", "<link", "url(", "@import"):
        assert forbidden not in text  # self-contained: nothing to fetch
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True)  # fmt: skip
    for chart in html.CHARTS:  # the charts survived the browser's parser, with their bars
        assert f'data-chart="{chart}"' in dom.stdout, dom.stderr[-2000:]
    assert dom.stdout.count("<rect") >= 3 + 7  # a visits bar, a leads bar, a cost bar, the funnel's steps
    shot = tmp_path / "report.png"
    subprocess.run([*browser, "--window-size=1000,1500", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    width, height, rows = read_png(shot)
    assert (width, height) == (1000, 1500)
    pixels = [row[i : i + 3] for row in rows for i in range(0, len(row), 3)]
    white = pixels.count(b"\xff\xff\xff")
    assert white < 0.97 * len(pixels), "the screenshot is blank"
    seen = set(pixels)
    for name, hex_rgb in [("visits", html.VISITS_COLOUR), ("leads", html.LEADS_COLOUR),
                          ("funnel", html.FUNNEL_COLOUR), ("cost per lead", html.COST_COLOUR)]:  # fmt: skip
        assert colour(hex_rgb) in seen, f"no {name} bars painted"


# -- what leaves the kiosk: metrics, daily stats, heartbeat ------------------------------------


def duties(db: Path, tmp_path: Path, today: str, *, link: LinkHealth | None = None, **fleet: Any) -> FleetDuties:
    settings = load_settings(CHECKOUT_CONFIG, overrides={"store": {"path": str(db)}, "fleet": fleet}).settings
    probes = Probes(state=lambda: "idle", link=link or LinkHealth(300), underruns=lambda: 3,
                    last_error=lambda: ("Realtime refused the API key", "2026-01-05T10:00:00+00:00"))  # fmt: skip
    return FleetDuties(settings, Store(db), probes, today=lambda: today, sync_on=True)


async def test_the_metrics_file_of_a_day_at_the_booth_passes_promtool(env: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    fleet = duties(env, tmp_path, date.today().isoformat(), metrics_dir=str(metrics))
    await fleet.metrics_once()
    text = (metrics / "kiosk.prom").read_text()
    check = await asyncio.to_thread(subprocess.run, [shutil.which("promtool") or "promtool", "check", "metrics"],
                                    input=text, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr
    assert 'kiosk_visits_total{reason="button"} 4' in text and "kiosk_leads_total 2" in text
    assert "kiosk_first_audio_seconds_count 5" in text and "kiosk_up 1" in text
    await fleet.close()
    assert "kiosk_up 0" in (metrics / "kiosk.prom").read_text()
    fleet.store.close()


async def test_daily_stats_and_heartbeat_reach_the_receiver_and_match_their_schemas(
    env: Path, tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    tomorrow = (date.today() + timedelta(days=1)).isoformat()  # the booth's day is over
    link = LinkHealth(300)
    link.failed(0.0)
    fleet = duties(env, tmp_path, tomorrow, link=link)
    queued = await asyncio.to_thread(fleet.queue_daily_documents)
    assert queued == [date.today().isoformat()]
    assert await asyncio.to_thread(fleet.queue_daily_documents) == []  # each day once
    await fleet.heartbeat_once()
    await fleet.heartbeat_once()  # replaces the first: only the newest waits
    with serve_receiver(tmp_path / "rx.db", cert) as rx:
        syncer = make_syncer(Store(env), sync_settings(rx.url, cert[0]), ManualClock())
        report = await asyncio.to_thread(syncer.drain)
        syncer.close()
        days, beats = rx.receiver.documents("daily_stats"), rx.receiver.documents("heartbeats")
    assert report.ok and report.dead == 0
    (daily,) = days.values()
    jsonschema.validate(daily, documents.schema(DAILY_KIND))
    assert daily["id"] == f"{fleet.s.kiosk_id}/{date.today().isoformat()}"
    assert (daily["visits"], daily["leads"], daily["consents_declined"]) == (7, 2, 1)
    assert daily["end_reasons"] == {"button": 4, "idle": 1, "offline": 1, "unavailable": 1}
    assert daily["offline_min"] > 0 and daily["unavailable_min"] > 0
    (beat,) = beats.values()
    jsonschema.validate(beat, documents.schema(HEARTBEAT_KIND))
    assert beat["health"] == "degraded" and beat["link"] == {"up": False, "failures": 1}
    assert beat["last_error"]["message"] == "Realtime refused the API key"
    assert beat["outbox"]["lead"] == {"pending": 2, "dead": 0}  # the demo has no sync: leads wait
    text = json.dumps([daily, beat])
    for personal in ("Jane", "jane.doe", "555", "0132"):  # the scenarios' visitor
        assert personal not in text
    fleet.store.close()
