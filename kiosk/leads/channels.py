"""The syncer's two delivery channels (CRM, SMTP): their retry state, and their pause.

A retryable failure holds a channel for a back-off. A fault of the channel itself (the CRM
refused our credentials with 401/403, the endpoint redirects elsewhere, the SMTP server
refused our login) is no fault of the leads: the channel *pauses*, its rows stay pending
untouched, it says so once at ERROR and in ``kiosk status``, and it resumes when the
configuration changes. The pause is kept in ``sync_state`` with a fingerprint of the
channel's configuration (endpoint and credentials, hashed), so a restart with the same
configuration stays paused and any change resumes it. A paused channel still probes with
one request every ``sync.backoff_cap_s`` (and once at each start): a 401 the CRM gave for
a wrong clock, or by its own mistake, must not stop a kiosk for good.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from kiosk.leads import outbox as ob
from kiosk.leads.store import Store
from kiosk.logs import event

log = logging.getLogger(__name__)


class Clock(Protocol):
    """Wall-clock UTC time for schedules kept in the database and for signatures."""

    def now(self) -> datetime:
        """The current UTC time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)


def fingerprint(*parts: object) -> str:
    """A short hash of a channel's configuration: equal when nothing changed (no secret in it)."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


@dataclass
class Channel:
    """One retry loop: consecutive failures, the pause they caused, and a channel fault."""

    name: str
    config_key: str = ""  # fingerprint() of the configuration the pause was made under
    failures: int = 0
    hold_until: datetime | None = None
    paused: str | None = None  # why the channel is paused ("" / None: it is not)

    def restore(self, store: Store) -> None:
        """Take up a pause recorded under the same configuration; forget one made under another."""
        state = ob.get_state(store)
        reason = state.get(f"{self.name}_paused") or None
        if reason is None:
            return
        if state.get(f"{self.name}_paused_key") == self.config_key:
            self.paused = reason
            return
        log.info("%s: configuration changed; delivery resumes", self.name,
                 extra=event("sync_resumed", channel=self.name))  # fmt: skip
        ob.set_state(store, **{f"{self.name}_paused": "", f"{self.name}_paused_key": ""})

    def pause(self, store: Store, reason: str, now: datetime, probe_s: float) -> None:
        """Stop delivering (but one probe each ``probe_s``) until the configuration changes;
        ERROR once, when the pause starts."""
        first = self.paused != reason
        self.paused = reason
        self.hold_until = now + timedelta(seconds=probe_s)
        ob.set_state(store, **{f"{self.name}_paused": reason, f"{self.name}_paused_key": self.config_key},
                     last_error=f"{self.name}: {reason}", last_error_at=ob.iso(now))  # fmt: skip
        if first:
            log.error(
                "%s: delivery paused: %s; its rows wait (not dead-lettered) until the configuration changes",
                self.name, reason, extra=event("sync_paused", channel=self.name, reason=reason),
            )  # fmt: skip

    def resume(self, store: Store) -> None:
        """A delivery got through (a forced pass): the pause is over."""
        if self.paused:
            self.paused = None
            ob.set_state(store, **{f"{self.name}_paused": "", f"{self.name}_paused_key": ""})


@dataclass
class DrainReport:
    """What one pass over the outbox did; ``paused`` names the channels that paused (their
    rows were due and stay pending)."""

    sent: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing failed, and no channel paused."""
        return not self.retried and not self.dead and not self.paused
