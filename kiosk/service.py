"""systemd integration: sd_notify READY / STATUS / WATCHDOG / STOPPING.

``daemon.notify`` delivers to whatever datagram socket ``$NOTIFY_SOCKET`` names and
returns False without one, so the same code runs under systemd, in a terminal and in
tests (which bind their own socket).
"""

from __future__ import annotations

import logging

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

    @staticmethod
    def _send(message: str) -> None:
        try:
            daemon.notify(message)
        except OSError as exc:  # a vanished socket must not take the kiosk down
            log.debug("sd_notify failed: %s", exc)
