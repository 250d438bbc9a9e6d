"""The Realtime link's health, from connection attempts (pure; time passed in).

Every attempt to open a Realtime session ends in a success (the warm standby or a visit
connected) or a failure (standby or visit could not connect, a connection dropped). The
link is *failing* from the first failure after a success until the next success; once it
has been failing for ``warn_after_s`` the caller is told, once, so ops get a WARNING
instead of a stream of INFO retries (a booth whose network is down at start).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LinkHealth:
    """Connection outcomes in, "has been failing too long" out."""

    warn_after_s: float
    failures: int = 0  # every failure since start (Prometheus counter)
    failing_since: float | None = None  # monotonic time of the first failure of this outage
    warned: bool = False

    @property
    def up(self) -> bool:
        """The last attempt succeeded (or none failed yet)."""
        return self.failing_since is None

    def failed(self, now: float) -> None:
        """An attempt failed at ``now``."""
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = now

    def ok(self, now: float) -> float | None:
        """An attempt succeeded: returns how long the link had been failing if that outage was
        warned about (so the caller can say it is over), else None."""
        outage = None if self.failing_since is None or not self.warned else now - self.failing_since
        self.failing_since, self.warned = None, False
        return outage

    def due_warning(self, now: float) -> float | None:
        """Seconds failing, once, when that passed ``warn_after_s``; None otherwise."""
        if self.failing_since is None or self.warned or now - self.failing_since < self.warn_after_s:
            return None
        self.warned = True
        return now - self.failing_since
