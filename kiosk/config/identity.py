"""This kiosk's default id: stable, unique per machine, and not the machine's own id.

``/etc/machine-id`` is unique per installation and survives reboots, but it is meant to
stay private to the machine (other ids are derived from it), so the kiosk id is a hash of
it under the kiosk's own key: ``kiosk-`` and 12 hex digits. Without a machine id (some
containers) the host name stands in.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

MACHINE_ID = Path("/etc/machine-id")


def machine_kiosk_id(machine_id: Path = MACHINE_ID) -> str:
    """``kiosk-<12 hex>`` derived from the machine id (or the host name)."""
    try:
        seed = machine_id.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        seed = ""
    if not seed:
        seed = "host:" + socket.gethostname()
    return "kiosk-" + hashlib.sha256(b"kiosk-id:" + seed.encode()).hexdigest()[:12]
