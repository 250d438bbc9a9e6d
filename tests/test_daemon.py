"""``kiosk run`` end to end, as systemd runs it: a subprocess on the virtual ALSA card
(tests/alsa.py), the simulator on loopback, a notify socket bound by the test and the
watchdog on. READY, STATUS (with the outbox), WATCHDOG and STOPPING arrive; `kiosk status`
beside it reads the same state and pending leads; when the microphone stops delivering (a
blocked audio path) the pings stop. `systemctl reload` (SIGHUP) lets the visit finish, then
the same process runs the program anew."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kiosk.leads.store import Store
from kiosk.sim.scenario import load_scenario
from kiosk.sim.server import SimOptions, SimServer
from tests.alsa import VirtualCard
from tests.synckit import save_leads

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(SimOptions(scenario=load_scenario("default"))) as server:
        yield server


class Notifications:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.seen: list[str] = []

    async def wait_for(self, pred: str, limit_s: float) -> str:
        """The first message (since the last wait) containing ``pred``."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(limit_s):
            while True:
                msg = (await loop.sock_recv(self.sock, 4096)).decode()
                self.seen.append(msg)
                if pred in msg:
                    return msg

    async def quiet_for(self, pred: str, seconds: float) -> bool:
        """True when no message containing ``pred`` arrives for ``seconds``."""
        try:
            await self.wait_for(pred, seconds)
        except TimeoutError:
            return True
        return False


def daemon_env(tmp_path: Path, card: VirtualCard, notify: Notifications, sim: SimServer) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")},
        "ALSA_CONFIG_PATH": str(card.config),
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "3000000",
        "KIOSK_REALTIME__URL": sim.url,
        "KIOSK_SECRETS__OPENAI_API_KEY": "sim-key",
        "KIOSK_STORE__PATH": str(tmp_path / "kiosk.db"),
        "KIOSK_SERVICE__STATUS_FILE": str(tmp_path / "status.json"),
        "KIOSK_SERVICE__AUDIO_STALL_S": "1.0",
        "KIOSK_AUDIO__INPUT_DEVICE": "vcap",
        "KIOSK_AUDIO__OUTPUT_DEVICE": "vplay",
    }


def tear_down(proc: subprocess.Popen[bytes], card: VirtualCard, notify: Notifications) -> None:
    """Kill the daemon if it is still there, stop the card, close the notify socket."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    card.close()
    notify.sock.close()


def spawn(env: dict[str, str], cwd: Path, stdin: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """``kiosk run --no-gpio``; ``stdin`` a pipe (Enter is the button) or DEVNULL (as under nohup)."""
    return subprocess.Popen(
        [sys.executable, "-m", "kiosk", "--config", str(REPO / "config" / "kiosk.toml"), "run", "--no-gpio"],
        env=env,
        cwd=cwd,
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_kiosk_run_notifies_systemd_and_the_watchdog_follows_the_audio(tmp_path: Path, sim: SimServer) -> None:
    card = VirtualCard(tmp_path, 24000, 24000)
    card.write_config()
    card.open()
    notify = Notifications(tmp_path / "notify.sock")
    store = Store(tmp_path / "kiosk.db")  # leads still waiting from before the restart
    save_leads(store, 2)
    store.enqueue("email_officer", "x", {"to": "lo@example.com", "subject": "s", "body": "b"})
    store.close()
    env = daemon_env(tmp_path, card, notify, sim)
    proc = spawn(env, tmp_path, stdin=subprocess.DEVNULL)  # no terminal, no keyboard button
    try:
        ready = await notify.wait_for("READY=1", 30)
        assert "STATUS=idle" in ready
        status = await notify.wait_for("STATUS=", 10)
        assert "STATUS=idle; 2 lead(s) waiting for upload; e-mail 1 pending, 0 dead; never synced" in status
        # `kiosk status` next to the running daemon: the same count, from the same definition.
        ops = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "kiosk", "--config", str(REPO / "config" / "kiosk.toml"), "status", "--json"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        report = json.loads(ops.stdout)
        assert ops.returncode == 0 and report["running"] and report["state"] == "idle", ops.stderr
        assert report["pending_leads"] == 2
        await notify.wait_for("WATCHDOG=1", 5)
        await notify.wait_for("WATCHDOG=1", 5)
        # The microphone goes silent at the source: PortAudio's reads block, no callbacks.
        card.pause_mic()
        assert await notify.quiet_for("WATCHDOG=1", 2.0 + 1.5), "pings went on with the audio path blocked"
        card.resume_mic()
        await notify.wait_for("WATCHDOG=1", 10)
        proc.send_signal(signal.SIGTERM)
        await notify.wait_for("STOPPING=1", 10)
        code = await asyncio.to_thread(proc.wait, 30)
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert code == 0, err
        assert "echo cancellation on" in err, "the shipped configuration cancels echo (echo.mode = aec)"
    finally:
        tear_down(proc, card, notify)


def test_kiosk_run_without_gpio_says_so_in_one_line_and_exits_78(tmp_path: Path) -> None:
    """No GPIO here (a laptop, a container): no traceback and no restart loop, one line and 78."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KIOSK_", "GPIOZERO_"))},
        "GPIOZERO_PIN_FACTORY": "no-such-factory",
        "KIOSK_STORE__PATH": str(tmp_path / "kiosk.db"),
        "KIOSK_SERVICE__STATUS_FILE": str(tmp_path / "status.json"),
    }
    r = subprocess.run(
        [sys.executable, "-m", "kiosk", "--config", str(REPO / "config" / "kiosk.toml"), "run"],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )
    assert r.returncode == 78, r.stderr
    assert "config: panel: no GPIO on this machine" in r.stderr and "--no-gpio" in r.stderr
    assert "Traceback" not in r.stderr


def says(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


async def file_says(path: Path, text: str, limit_s: float) -> None:
    """Wait until ``path`` (rewritten by the daemon) contains ``text``."""
    async with asyncio.timeout(limit_s):
        while not says(path, text):  # noqa: ASYNC110 - another process writes it
            await asyncio.sleep(0.1)


async def test_reload_lets_the_visit_finish_then_the_same_process_starts_anew(tmp_path: Path, sim: SimServer) -> None:
    card = VirtualCard(tmp_path, 24000, 24000)
    card.write_config()
    card.open()
    notify = Notifications(tmp_path / "notify.sock")
    metrics = tmp_path / "textfile"  # node_exporter's textfile collector directory
    metrics.mkdir()
    env = {**daemon_env(tmp_path, card, notify, sim), "KIOSK_FLEET__METRICS_DIR": str(metrics),
           "KIOSK_FLEET__METRICS_INTERVAL_S": "1"}  # fmt: skip
    proc = spawn(env, tmp_path)
    assert proc.stdin is not None and proc.stderr is not None

    def press() -> None:
        assert proc.stdin is not None
        proc.stdin.write(b"\n")
        proc.stdin.flush()

    try:
        await notify.wait_for("READY=1", 30)
        press()  # a visitor walks up: the assistant greets them
        await notify.wait_for("STATUS=listening", 15)
        proc.send_signal(signal.SIGHUP)  # `systemctl reload kiosk` (ExecReload=)
        await notify.wait_for("STATUS=restarting after the current visit", 10)
        # The visit goes on: no restart while the visitor is there.
        assert await notify.quiet_for("RELOADING=1", 2.0)
        assert proc.poll() is None
        press()  # the visitor ends the visit
        await notify.wait_for("RELOADING=1", 15)
        ready = await notify.wait_for("READY=1", 30)  # the new program, in the same process
        assert "STATUS=idle" in ready and proc.poll() is None
        prom = metrics / "kiosk.prom"
        await file_says(prom, 'kiosk_visits_total{reason="button"} 1', 10)  # the new program counts the visit
        assert "kiosk_up 1" in prom.read_text() and "kiosk_watchdog_pings_total" in prom.read_text()
        proc.send_signal(signal.SIGTERM)
        await notify.wait_for("STOPPING=1", 10)
        code = await asyncio.to_thread(proc.wait, 30)
        log = proc.stderr.read().decode()
        assert code == 0, log
        assert "kiosk_up 0" in prom.read_text()  # a clean stop says so
    finally:
        tear_down(proc, card, notify)
    events = [line for line in log.splitlines() if "[event=" in line]
    names = [line.split("[event=", 1)[1].split()[0].rstrip("]") for line in events]
    assert names.count("start") == 2 and names.count("ready") == 2
    ended = [line for line in events if "event=session_end" in line]
    assert len(ended) == 1 and "reason=button" in ended[0]  # ended by the visitor, not cut off
    # reload requested, the visit ended, then the old program stopped for the reload
    assert names.index("reload") < names.index("session_end") < names.index("stop")
    assert "reason=reload" in events[names.index("stop")]
    assert "reason=signal" in events[len(names) - 1 - names[::-1].index("stop")]
