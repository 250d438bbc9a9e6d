"""A hostile CRM: every status class, Retry-After in any form, garbage, redirects to another
host, a slow drip, TLS mismatches. Each behaviour: the pass ends within its deadline, no lead
is lost (a well-behaved CRM afterwards gets every one), the receiver stores none twice, and
the log holds no personal data or secret. Plus `kiosk sync --once` and `kiosk run` (SIGTERM)
against a CRM that drips its answer one byte at a time."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.leads import outbox as ob
from kiosk.leads.store import Store
from tests.chaoskit import HostileCrm, Request, good, timed
from tests.synckit import (
    SECRET,
    TOKEN,
    ManualClock,
    lead,
    make_cert,
    make_syncer,
    save_leads,
    server_tls,
    sync_settings,
)

pytestmark = pytest.mark.timeout(120)
LEADS = 3
DEADLINE_S = 1.0
BOUND_S = 3 * DEADLINE_S  # a pass may meet the deadline once per channel, plus slack for a busy machine
REPO = Path(__file__).resolve().parent.parent


def stored(req: Request) -> None:
    req.store()


def status(code: int, headers: dict[str, str] | None = None, *, store: bool = False) -> Callable[[Request], None]:
    def behave(req: Request) -> None:
        if store:
            req.store()
        req.answer(code, b'{"error": "chaos"}', headers)

    return behave


def raw(data: bytes, *, store: bool = False) -> Callable[[Request], None]:
    def behave(req: Request) -> None:
        if store:
            req.store()
        req.send(data)

    return behave


def drip(data: bytes, *, store: bool = True) -> Callable[[Request], None]:
    def behave(req: Request) -> None:
        if store:
            req.store()
        req.drip(data, 0.2)

    return behave


def reset(*, store: bool) -> Callable[[Request], None]:
    def behave(req: Request) -> None:
        if store:
            req.store()
        req.reset()

    return behave


OK, RETRY, PAUSE, DEAD = "ok", "retry", "pause", "dead"
OTHER = {"Location": "https://crm.attacker.example/leads"}
DATES = {"past": "Wed, 21 Oct 2015 07:28:00 GMT", "far": "Fri, 31 Dec 9999 23:59:59 GMT",
         "bad day": "Mon, 32 Foo 2020 99:99:99 GMT", "year 99999": "Wed, 21 Oct 99999 07:28:00 GMT"}  # fmt: skip
RETRY_AFTER = ["5", "0", "²", "٣", "-5", "1e9", "9" * 400, "junk", "", "5, 6", "\x01", *DATES.values()]
HUGE = b"x" * (3 * 1024 * 1024)

BEHAVIOURS: dict[str, tuple[Callable[[Request], None], str]] = {
    **{f"{code} stored": (status(code, store=True), OK) for code in (200, 201, 202, 204)},
    **{f"{code} to another host": (status(code, OTHER), PAUSE) for code in (301, 302, 303, 307, 308)},
    "300 no location": (status(300), PAUSE),
    **{f"{code}": (status(code), PAUSE) for code in (401, 403, 407)},
    **{f"{code}": (status(code), DEAD) for code in (400, 404, 405, 409, 410, 413, 415, 422, 451)},
    **{f"{code}": (status(code), RETRY) for code in (408, 425, 429, 500, 501, 502, 503, 504, 599)},
    **{f"503 Retry-After {v!r}"[:40]: (status(503, {"Retry-After": v}), RETRY) for v in RETRY_AFTER},
    "200 garbage body": (raw(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n\x00\xff{]garb", store=True), OK),
    "200 huge body": (raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(HUGE) + HUGE, store=True), OK),
    # A complete 2xx status line is the CRM's word that it stored the batch, whatever follows.
    "200 body cut short": (raw(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{", store=True), OK),
    "not HTTP": (raw(b"SSH-2.0-OpenSSH_9.6\r\n"), RETRY),
    "binary junk": (raw(bytes(range(256)) * 4), RETRY),
    "status only, no headers": (raw(b"HTTP/1.1 200\r\n", store=True), OK),
    "status 999": (raw(b"HTTP/1.1 999 What\r\nContent-Length: 0\r\n\r\n"), RETRY),
    "status -1": (raw(b"HTTP/1.1 -1 What\r\nContent-Length: 0\r\n\r\n"), RETRY),
    "header 100 KB": (raw(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 100_000 + b"\r\n\r\n", store=True), RETRY),
    "1000 headers": (raw(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 1000 + b"\r\n", store=True), RETRY),
    "stored, then no answer": (stored, RETRY),
    "stored, then reset": (reset(store=True), RETRY),
    "reset before storing": (reset(store=False), RETRY),
    "drip the status line": (drip(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"), RETRY),
    "drip the headers": (drip(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"z" * 200 + b"\r\n\r\n"), RETRY),
    "drip the body": (raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", store=True), RETRY),
}


def _drip_body(req: Request) -> None:
    req.store()
    req.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    req.drip(b"{" + b" " * 98 + b"}", 0.2)


BEHAVIOURS["drip the body"] = (_drip_body, RETRY)


def personal_or_secret(text: str) -> list[str]:
    words = [TOKEN, SECRET]
    for i in range(LEADS):
        one = lead(i)
        words += [one.name, one.email, one.phone, one.phone[2:]]
    return [w for w in words if w in text]


def run_behaviour(tmp_path: Path, crm: HostileCrm, url: str, ca: Path, behaviour: Callable[[Request], None],
                  caplog: pytest.LogCaptureFixture) -> tuple[str, float]:  # fmt: skip
    """One pass against the behaviour, then recovery against a well-behaved CRM; the outcome."""
    store = Store(tmp_path / "k.db")
    ids = save_leads(store, LEADS)
    clock = ManualClock()
    sync = sync_settings(url, ca, timeout_s=DEADLINE_S, max_retry_after_s=600.0)
    crm.behaviour = behaviour
    with caplog.at_level(logging.DEBUG), timed() as elapsed:
        report = make_syncer(store, sync, clock).drain()
        took = elapsed()
    outcome = OK if report.sent == LEADS else DEAD if report.dead else PAUSE if report.paused else RETRY
    states = {r[0] for r in store.conn.execute("SELECT state FROM outbox")}
    assert states <= {"pending", "sent", "dead"} and store.count("leads") == LEADS
    hold = store.conn.execute("SELECT max(next_attempt_at) FROM outbox").fetchone()[0]
    if hold is not None:  # any Retry-After is a bounded delay
        assert (ob.datetime.fromisoformat(hold) - clock.now()).total_seconds() <= sync.max_retry_after_s + 1
    # Recovery: the CRM behaves; dead rows re-queued as the runbook says; every lead arrives once.
    crm.behaviour = good
    ob.requeue(store, all_dead=True)
    fixed = make_syncer(store, sync_settings(url, ca, timeout_s=5.0), clock)
    fixed.drain(force=True)
    assert set(crm.receiver.stored()) >= set(ids), "a lead was lost"
    assert len(crm.receiver.stored()) == len(set(crm.receiver.stored()))
    count = crm.receiver._connect().execute("SELECT count(*), count(DISTINCT id) FROM leads").fetchone()
    assert count[0] == count[1] == LEADS, "the receiver stored a lead twice"
    leaks = personal_or_secret(caplog.text)
    assert not leaks, f"personal data or secrets in the log: {leaks}"
    store.close()
    return outcome, took


@pytest.mark.parametrize("name", list(BEHAVIOURS))
def test_a_hostile_crm_loses_nothing_and_holds_nothing(
    name: str, tmp_path: Path, cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    behaviour, expected = BEHAVIOURS[name]
    with HostileCrm(tmp_path / "r.db", server_tls(*cert)) as crm:
        outcome, took = run_behaviour(tmp_path, crm, crm.url(), cert[0], behaviour, caplog)
    assert outcome == expected, f"{name}: {outcome}"
    assert took < BOUND_S, f"{name}: the pass took {took:.1f} s"


TLS_MISMATCHES = ["plain HTTP on an https endpoint", "certificate from another CA", "TLS on an http endpoint"]


@pytest.mark.parametrize("name", TLS_MISMATCHES)
def test_tls_mismatches_retry_and_lose_nothing(
    name: str, tmp_path: Path, cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    other_ca, _ = make_cert(tmp_path)
    tls = None if name.startswith("plain") else server_tls(*cert)
    with HostileCrm(tmp_path / "r.db", tls) as crm:
        store = Store(tmp_path / "k.db")
        ids = save_leads(store, LEADS)
        scheme = "http" if name.startswith("TLS on") else "https"
        sync = sync_settings(crm.url(scheme), other_ca if "another CA" in name else cert[0], timeout_s=DEADLINE_S)
        with caplog.at_level(logging.DEBUG), timed() as elapsed:
            report = make_syncer(store, sync, ManualClock()).drain()
        assert elapsed() < BOUND_S and report.retried == LEADS and report.sent == 0
        assert crm.receiver.stored() == {}
        assert not personal_or_secret(caplog.text)
        assert {r[0] for r in store.conn.execute("SELECT state FROM outbox")} == {"pending"}
        assert len(ids) == LEADS


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    env.update(KIOSK_SECRETS__SYNC_TOKEN=TOKEN, KIOSK_SECRETS__SYNC_SIGNING_SECRET=SECRET)
    return env


def test_sync_once_against_a_dripping_crm_ends_at_its_deadline(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    save_leads(store, 2)
    store.close()
    with HostileCrm(tmp_path / "r.db") as crm:
        crm.behaviour = drip(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" * 10, store=False)  # ~100 s
        cfg = tmp_path / "kiosk.toml"
        cfg.write_text(f'kiosk_id = "k1"\n[store]\npath = "k.db"\n[sync]\nendpoint = "{crm.url("http")}"\n'
                       "timeout_s = 2.0\n")  # fmt: skip
        started = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(cfg), "sync", "--once"], env=_env(tmp_path),
                           capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        took = time.monotonic() - started
    assert r.returncode == os.EX_UNAVAILABLE, r.stderr  # something was due, nothing delivered
    assert "no complete answer within 2 s" in r.stderr, r.stderr
    assert took < 12, f"sync --once took {took:.1f} s against a deadline of 2 s"


async def test_sigterm_stops_the_daemon_within_5_s_while_the_crm_drips(tmp_path: Path) -> None:
    """The daemon is mid-request to a CRM that sends a byte every 0.2 s (per-request limit
    60 s): SIGTERM must end it within 5 s anyway, and the lead stays pending."""
    import asyncio

    from kiosk.sim.scenario import load_scenario
    from kiosk.sim.server import SimOptions, SimServer
    from tests.alsa import VirtualCard
    from tests.test_daemon import Notifications, daemon_env, spawn

    card = VirtualCard(tmp_path, 24000, 24000)
    card.write_config()
    card.open()
    notify = Notifications(tmp_path / "notify.sock")
    store = Store(tmp_path / "kiosk.db")
    save_leads(store, 2)
    store.close()
    async with SimServer(SimOptions(scenario=load_scenario("default"))) as sim:
        with HostileCrm(tmp_path / "r.db") as crm:
            crm.behaviour = drip(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" * 20, store=False)
            env = daemon_env(tmp_path, card, notify, sim) | _env(tmp_path)
            env |= {"KIOSK_SYNC__ENDPOINT": crm.url("http"), "KIOSK_SYNC__TIMEOUT_S": "60"}
            proc = spawn(env, tmp_path, stdin=subprocess.DEVNULL)
            try:
                await notify.wait_for("READY=1", 30)
                async with asyncio.timeout(20):
                    while crm.requests == 0:  # noqa: ASYNC110 - the server counts in its own thread
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # well into the drip
                proc.send_signal(signal.SIGTERM)
                started = time.monotonic()
                code = await asyncio.to_thread(proc.wait, 30)
                took = time.monotonic() - started
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
                card.close()
                notify.sock.close()
    assert code == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert took < 5.0, f"SIGTERM took {took:.1f} s"
    store = Store(tmp_path / "kiosk.db")
    assert store.count("outbox", "kind = 'lead' AND state = 'pending'") == 2
    store.close()


async def test_stopping_the_syncer_cuts_a_dripping_request_at_once(tmp_path: Path) -> None:
    """The daemon's sync loop, cancelled mid-request (per-request limit 60 s, the CRM sends a
    byte every 0.2 s): it ends within a second and the leads stay pending, untouched."""
    import asyncio

    store = Store(tmp_path / "k.db")
    save_leads(store, 2)
    with HostileCrm(tmp_path / "r.db") as crm:
        crm.behaviour = drip(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" * 20, store=False)
        syncer = make_syncer(store, sync_settings(crm.url("http"), None, timeout_s=60.0), ManualClock())  # type: ignore[arg-type]
        task = asyncio.create_task(syncer.run())
        async with asyncio.timeout(10):
            while crm.requests == 0:  # noqa: ASYNC110 - the server counts in its own thread
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # well into the drip
        task.cancel()
        started = time.monotonic()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        took = time.monotonic() - started
        syncer.close()
    assert took < 1.0, f"stopping took {took:.1f} s"
    check = Store(tmp_path / "k.db")
    assert check.count("outbox", "state = 'pending' AND attempts = 0") == 2
