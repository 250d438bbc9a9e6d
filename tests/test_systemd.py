"""systemd integration: the unit verifies; sd_notify messages reach a real datagram socket;
the watchdog stops pinging when the audio path stops making progress; the status file."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.leads.outbox import SyncStatus
from kiosk.logs import event
from kiosk.runtime.systemd import (
    Notifier,
    ServiceMonitor,
    StatusFile,
    StatusLogHandler,
    Watchdog,
    read_status,
    tick_for,
    watchdog_period_s,
)

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "kiosk.service"
DROPIN = REPO / "systemd" / "kiosk.service.d" / "10-restart-backoff.conf"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(5.0)  # every wait has a limit

    def messages(self) -> list[str]:
        """Everything received so far (non-blocking once drained)."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(5.0)
        return out

    def next(self) -> str:
        """The next message, waiting at most 5 s."""
        return self.sock.recv(4096).decode()


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    path = tmp_path / "notify.sock"
    s = NotifySocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield s
    s.sock.close()


# ---- the unit -------------------------------------------------------------------------


def _verify(unit_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit_dir / "kiosk.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _copy_unit(dest: Path) -> None:
    # verify checks that ExecStart's binary exists: point it at this checkout's kiosk
    # (same arguments), which is there whenever the tests run.
    text = UNIT.read_text()
    exe = REPO / ".venv" / "bin" / "kiosk"
    assert exe.exists()
    text, n = re.subn(r"^ExecStart=/opt/kiosk/venv/bin/kiosk ", f"ExecStart={exe} ", text, flags=re.M)
    assert n == 1
    dest.mkdir()
    (dest / "kiosk.service").write_text(text)


@needs_analyze
def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    _copy_unit(tmp_path / "u")
    result = _verify(tmp_path / "u")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_unit_has_the_required_settings() -> None:
    text = UNIT.read_text()
    settings = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line and not line.startswith("#")}
    for key in (
        "Type",
        "WatchdogSec",
        "Restart",
        "RestartSec",
        "StartLimitIntervalSec",
        "StartLimitBurst",
        "RestartPreventExitStatus",
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "StateDirectory",
        "ConfigurationDirectory",
        "LoadCredential",
        "SupplementaryGroups",
        "DeviceAllow",
    ):
        assert key in settings, key
    assert "Type=notify" in text and "ProtectSystem=strict" in text and "SupplementaryGroups=audio gpio" in text
    assert "DeviceAllow=char-alsa rw" in text and "DeviceAllow=char-gpiochip rw" in text


def _systemd_version() -> int:
    out = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True, timeout=30, check=True)
    return int(re.search(r"systemd (\d+)", out.stdout).group(1))  # type: ignore[union-attr]


@needs_analyze
def test_restart_backoff_dropin(tmp_path: Path) -> None:
    """On systemd >= 254 the drop-in verifies cleanly; older systemd only names the two new keys."""
    _copy_unit(tmp_path / "u")
    (tmp_path / "u" / "kiosk.service.d").mkdir()
    shutil.copy(DROPIN, tmp_path / "u" / "kiosk.service.d")
    result = _verify(tmp_path / "u")
    assert result.returncode == 0
    if _systemd_version() >= 254:
        assert result.stderr == ""
    else:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 2
        assert all("Unknown key" in line and ("RestartSteps" in line or "RestartMaxDelaySec" in line) for line in lines)


# ---- sd_notify --------------------------------------------------------------------------


def test_notifier_messages_reach_the_socket(notify: NotifySocket) -> None:
    n = Notifier()
    n.ready("idle")
    n.status("listening")
    n.status("listening")  # repeated: not sent again
    n.watchdog()
    n.stopping()
    assert notify.messages() == ["READY=1\nSTATUS=idle", "STATUS=listening", "WATCHDOG=1", "STOPPING=1"]


def test_notifier_without_socket_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    Notifier().ready("idle")  # no socket: nothing to assert but that it does not raise
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/dir/sock")
    Notifier().watchdog()  # a vanished socket must not take the kiosk down


class Counter:
    """A progress probe, like PyAudioMicrophone.callbacks."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        return self.n


def test_watchdog_pings_only_while_audio_progresses(notify: NotifySocket, caplog: pytest.LogCaptureFixture) -> None:
    mic, speaker = Counter(), Counter()
    dog = Watchdog(Notifier(), {"mic": mic, "speaker": speaker}, stall_s=2.0)
    now = 100.0
    for _ in range(5):  # both callbacks advance: a ping per check
        mic.n += 10
        speaker.n += 10
        assert dog.check(now)
        now += 1.0
    assert notify.messages() == ["WATCHDOG=1"] * 5
    # The microphone's PortAudio callback blocks: its counter freezes.
    with caplog.at_level(logging.ERROR):
        results = []
        for _ in range(5):
            speaker.n += 10
            results.append(dog.check(now))
            now += 1.0
    # Last progress at t=104: t=105 still pings, from t=106 (stall_s later) none.
    assert results == [True, False, False, False, False]
    assert notify.messages() == ["WATCHDOG=1"]
    assert dog.stalled == ["mic"]
    assert [r.kiosk["event"] for r in caplog.records] == ["watchdog_stall"]  # type: ignore[attr-defined]
    # The callback comes back: pings resume.
    mic.n += 1
    speaker.n += 1
    assert dog.check(now)
    assert notify.messages() == ["WATCHDOG=1"]
    assert dog.stalled == []


def _outbox(pending_leads: int) -> SyncStatus:
    return SyncStatus(pending_leads, 0, 0, 0, None, None, None, None)


def test_monitor_sends_status_and_stops_pinging_on_stall(notify: NotifySocket, tmp_path: Path) -> None:
    """The daemon's tick: STATUS= with state and pending leads, status file, watchdog."""
    mic = Counter()
    state = ["idle"]
    pending = [0]
    status = StatusFile(tmp_path / "status.json")
    status.started()
    mon = ServiceMonitor(
        Notifier(),
        status,
        lambda: state[0],
        lambda: _outbox(pending[0]),
        Watchdog(Notifier(), {"mic": mic}, stall_s=3.0),
    )
    mic.n = 1
    mon.tick(0.0)
    state[0], pending[0] = "listening", 2
    mic.n = 2
    mon.tick(1.0)
    assert notify.messages() == [
        "WATCHDOG=1",
        "STATUS=idle; 0 lead(s) waiting for upload; never synced",
        "WATCHDOG=1",
        "STATUS=listening; 2 lead(s) waiting for upload; never synced",
    ]
    data = read_status(tmp_path / "status.json")
    assert data is not None and data["state"] == "listening" and data["pending_leads"] == 2
    for t in (2.0, 3.0, 4.0, 5.0):  # mic frozen at 2 since t=1: stall from t=4
        mon.tick(t)
    assert notify.messages() == ["WATCHDOG=1", "WATCHDOG=1"]


async def test_monitor_runs_until_stopped(notify: NotifySocket, tmp_path: Path) -> None:
    mic = Counter()
    status = StatusFile(tmp_path / "status.json")
    status.started()
    stop = asyncio.Event()
    watchdog = Watchdog(Notifier(), {"mic": mic}, stall_s=60)
    mon = ServiceMonitor(Notifier(), status, lambda: "idle", lambda: _outbox(0), watchdog)
    mon._tick_s = 0.01
    task = asyncio.create_task(mon.run(stop))
    async with asyncio.timeout(10):
        while mon.watchdog is not None and mon.watchdog.pings < 3:
            mic.n += 1
            await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert "WATCHDOG=1" in notify.messages()
    assert read_status(tmp_path / "status.json")["state"] == "stopped"  # type: ignore[index]


def test_watchdog_period_from_environment() -> None:
    import os

    assert watchdog_period_s({}) is None
    assert watchdog_period_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_period_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None or os.getpid() == 1
    assert watchdog_period_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_period_s({"WATCHDOG_USEC": "junk"}) is None
    assert tick_for(30.0) == 1.0 and tick_for(0.6) == pytest.approx(0.2) and tick_for(None) == 1.0


def test_status_file_keeps_last_session_and_error(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    status = StatusFile(path)
    status.started()
    handler = StatusLogHandler(status)
    log = logging.getLogger("kiosk.test_status")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("started", extra=event("session_start", session="abc"))
        log.info("ended", extra=event("session_end", session="abc", reason="button", duration_s=42.5))
        log.error("upload to crm failed for jane@example.com", extra=event("sync_failed"))
    finally:
        log.removeHandler(handler)
    data = json.loads(path.read_text())
    assert data["last_session_id"] == "abc"
    assert data["last_session_reason"] == "button" and data["last_session_duration_s"] == 42.5
    assert data["last_error"] == "upload to crm failed for <email>"  # no personal data in the file
    assert data["last_error_event"] == "sync_failed"
    # A restart keeps the last visit and error but resets the run's facts.
    StatusFile(path).started(pid=4242)
    again = json.loads(path.read_text())
    assert again["pid"] == 4242 and again["state"] == "starting"
    assert again["last_session_reason"] == "button" and again["last_error"].startswith("upload")
