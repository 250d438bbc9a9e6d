"""systemd integration: sd_notify READY / STATUS / WATCHDOG / STOPPING, and the status file.

``daemon.notify`` delivers to whatever datagram socket ``$NOTIFY_SOCKET`` names and
returns False without one, so the same code runs under systemd, in a terminal and in
tests (which bind their own socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kiosk.leads.outbox import SyncStatus
from kiosk.leads.records import utc_now
from kiosk.logs import event, fields_of, redact
from systemd import daemon

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages; remembers the last status to avoid repeats."""

    def __init__(self) -> None:
        self._status = ""

    def ready(self, status: str) -> None:
        """Devices and store are up."""
        self._send(f"READY=1\nSTATUS={status}")
        self._status = status

    def status(self, status: str) -> None:
        """Update the one-line status ``systemctl status`` shows."""
        if status != self._status:
            self._status = status
            self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        """Tell systemd we are alive (only call when the loop and audio path progress)."""
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """We are shutting down on purpose."""
        self._send("STOPPING=1")

    def reloading(self) -> None:
        """``systemctl reload``: the process is about to re-execute itself (READY=1 follows)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    @staticmethod
    def _send(message: str) -> None:
        try:
            daemon.notify(message)
        except OSError as exc:  # a vanished socket must not take the kiosk down
            log.debug("sd_notify failed: %s", exc)


# ---- the watchdog ---------------------------------------------------------------------

Probe = Callable[[], int]


def watchdog_period_s(environ: Mapping[str, str]) -> float | None:
    """systemd's ``WatchdogSec`` from ``$WATCHDOG_USEC`` (None when the watchdog is off).

    The environment is passed in by the composition root; ``$WATCHDOG_PID``, when set,
    must be our pid (systemd sets it for the main process only).
    """
    usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


class Watchdog:
    """Pings ``WATCHDOG=1`` only while every progress probe keeps advancing.

    A probe is a counter that grows while its part works: the PortAudio callback counts
    of the microphone and the speaker, the chunks the event loop has pumped. The loop's
    own health needs no probe: ``check`` runs on the loop, so a blocked loop sends
    nothing. A probe unchanged for ``stall_s`` stops the pings, and systemd restarts the
    service after ``WatchdogSec``: a stalled PortAudio callback becomes a restart rather
    than a deaf kiosk.
    """

    def __init__(self, notifier: Notifier, probes: Mapping[str, Probe], *, stall_s: float) -> None:
        self._notifier = notifier
        self._probes = dict(probes)
        self._stall_s = stall_s
        self._last: dict[str, int] = {}
        self._moved: dict[str, float] = {}
        self.stalled: list[str] = []
        self.pings = 0

    def check(self, now: float) -> bool:
        """Sample the probes at monotonic ``now``; ping and return True when all progress."""
        stalled = []
        for name, probe in self._probes.items():
            value = probe()
            if name not in self._last or value != self._last[name]:
                self._last[name] = value
                self._moved[name] = now
            elif now - self._moved[name] >= self._stall_s:
                stalled.append(name)
        if stalled != self.stalled:
            if stalled:
                log.error(
                    "no progress from %s for %.0f s: watchdog pings stopped",
                    ", ".join(stalled),
                    self._stall_s,
                    extra=event("watchdog_stall", probes=",".join(stalled)),
                )
            else:
                log.warning("progress again: watchdog pings resumed", extra=event("watchdog_resumed"))
            self.stalled = stalled
        if stalled:
            return False
        self._notifier.watchdog()
        self.pings += 1
        return True


# ---- the status file ---------------------------------------------------------------------


def boottime_s() -> float:
    """Seconds since boot (CLOCK_BOOTTIME): comparable across processes, unlike wall time on a Pi."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def boot_id() -> str:
    """The kernel's id of this boot ('' when unknown): boottime values compare only within it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


class StatusFile:
    """The daemon's small status JSON (``kiosk status`` reads it), replaced atomically.

    Holds what the database cannot tell: the current state, when the daemon started, the
    last visit and the last error. Wall-clock stamps are for humans; uptime comes from
    ``CLOCK_BOOTTIME`` because a Pi without RTC jumps its wall clock after boot.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self._lock = threading.Lock()  # log records arrive from device threads too

    def started(self, pid: int | None = None) -> None:
        """A new daemon run: reset the file, keeping the last visit and error of the previous run."""
        old = read_status(self.path) or {}
        kept = {k: v for k, v in old.items() if k.startswith(("last_session", "last_error"))}
        self.data = {
            **kept,
            "pid": os.getpid() if pid is None else pid,
            "boot_id": boot_id(),
            "started_boottime_s": round(boottime_s(), 3),
            "started_at": utc_now(),
            "state": "starting",
        }
        self._write()

    def update(self, **fields: Any) -> None:
        """Merge ``fields`` and rewrite the file (never raises: status is not worth a crash)."""
        with self._lock:
            self.data.update(fields)
            self.data["updated_at"] = utc_now()
            self._write()

    def _write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.debug("status file %s not written: %s", self.path, exc)


def read_status(path: Path) -> dict[str, Any] | None:
    """The status file's contents, or None when missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class StatusLogHandler(logging.Handler):
    """Keeps the status file's last visit and last error from the structured log events.

    Installed on the root logger by the daemon, so no component needs to know the status
    file: ``session_start`` / ``session_end`` events and any ERROR record update it.
    """

    def __init__(self, status: StatusFile) -> None:
        super().__init__(logging.INFO)
        self._status = status

    def emit(self, record: logging.LogRecord) -> None:
        """Record the event's facts (messages are redacted: they end up in a file)."""
        try:
            f = fields_of(record)
            name = f.get("event")
            if name == "session_start":
                self._status.update(last_session_started_at=utc_now(), last_session_id=f.get("session"))
            elif name == "session_end":
                self._status.update(
                    last_session_ended_at=utc_now(),
                    last_session_reason=f.get("reason"),
                    last_session_duration_s=f.get("duration_s"),
                )
            if record.levelno >= logging.ERROR:
                self._status.update(
                    last_error=redact(record.getMessage())[:300], last_error_at=utc_now(), last_error_event=name
                )
        except Exception:  # logging must never take the kiosk down
            self.handleError(record)


class ServiceMonitor:
    """The daemon's periodic service duties: watchdog, STATUS= line, status file.

    ``state`` and ``outbox`` are read on every tick (the state machine's state, the
    outbox's :class:`~kiosk.leads.outbox.SyncStatus`); only changes are sent to systemd and
    written to the file, so ``systemctl status`` and ``kiosk status`` show the same counts.
    """

    def __init__(
        self,
        notifier: Notifier,
        status: StatusFile,
        state: Callable[[], str],
        outbox: Callable[[], SyncStatus],
        watchdog: Watchdog | None,
        *,
        tick_s: float = 1.0,
        extra: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self._notifier, self._status, self._state, self._outbox = notifier, status, state, outbox
        self.watchdog = watchdog
        self._tick_s = tick_s
        self._extra = extra  # more status-file values (the link's health), written when they change
        self._shown: tuple[str, SyncStatus | None] | None = None
        self._extra_shown: dict[str, Any] = {}

    def tick(self, now: float) -> None:
        """One round: watchdog check, then STATUS and the file when state or outbox changed."""
        if self.watchdog is not None:
            self.watchdog.check(now)
        try:
            outbox: SyncStatus | None = self._outbox()
        except Exception as exc:  # a busy database must not stop the watchdog
            log.debug("outbox status unavailable: %s", exc)
            outbox = self._shown[1] if self._shown else None
        shown = (self._state(), outbox)
        if shown != self._shown:
            self._shown = shown
            self._notifier.status(status_line(*shown))
            pending = {} if outbox is None else {"pending_leads": outbox.pending_leads, "dead_leads": outbox.dead_leads}
            self._status.update(state=shown[0], **pending)
        extra = self._extra()
        if extra != self._extra_shown:
            self._extra_shown = extra
            self._status.update(**extra)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self.tick(loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._tick_s):
                    await stop.wait()
        self._status.update(state="stopped")


def status_line(state: str, outbox: SyncStatus | None) -> str:
    """The one-line ``STATUS=`` text ``systemctl status`` shows."""
    return state if outbox is None else f"{state}; {outbox.line()}"


def tick_for(watchdog_s: float | None) -> float:
    """Tick often enough to ping at least three times per ``WatchdogSec``."""
    return 1.0 if watchdog_s is None else max(0.1, min(1.0, watchdog_s / 3))
