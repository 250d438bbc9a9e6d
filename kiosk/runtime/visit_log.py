"""The running kiosk's books: a record of every visit, time spent offline, the link's health.

:class:`VisitLog` is fed by the kiosk with what happened (a visit started or was refused,
first audio, transcript lines, tools, the hangup, every state-machine input) and keeps a
:class:`~kiosk.fleet.visits.VisitTracker` for the visit under way. Records and state time
are written to SQLite off the event loop (a durable write can take tens of ms on an SD
card), like :mod:`kiosk.runtime.budget_guard` does for usage. It also watches the Realtime
link (:class:`~kiosk.fleet.link.LinkHealth`): a WARNING (``link_down``) once it has been
failing for ``fleet.link_warn_min`` minutes, and ``link_restored`` when it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from kiosk import conversation as cv
from kiosk.errors import StoreError
from kiosk.fleet import records
from kiosk.fleet.link import LinkHealth
from kiosk.fleet.visits import VisitRecord, VisitTracker, refused
from kiosk.leads.records import utc_now
from kiosk.leads.store import Store
from kiosk.logs import event
from kiosk.realtime import session as rs

log = logging.getLogger(__name__)

TIMED_STATES = frozenset({cv.State.OFFLINE, cv.State.UNAVAILABLE, cv.State.ERROR})  # counted per day
FLUSH_EVERY_S = 60.0  # a long outage is counted while it lasts (and split at midnight)
_FAILED = (cv.ConnectFailed, cv.ConnectionLost, cv.ReconnectFailed)
_CONNECTED = (cv.SessionReady, cv.NetworkRestored)


class VisitLog:
    """Visit records, state time and link health for one running kiosk."""

    def __init__(
        self,
        store: Store,
        price: Callable[[rs.Usage], float],
        *,
        today: Callable[[], str],
        clock: Callable[[], float],
        link_warn_s: float,
    ) -> None:
        self._store = store
        self._price = price  # what a visit's usage cost with this kiosk's models
        self._today = today  # the local day
        self._clock = clock  # monotonic (the loop's)
        self.link = LinkHealth(link_warn_s)
        self.current: VisitTracker | None = None
        self.saved: deque[VisitRecord] = deque(maxlen=100)  # the latest records (demo, tests)
        self._writes: set[asyncio.Task[None]] = set()
        self._timed: tuple[cv.State, float] | None = None  # a timed state and since when

    # -- visits ---------------------------------------------------------------------------

    def started(self, visit_id: str) -> None:
        """A visit started (the press)."""
        self.current = VisitTracker(visit_id, self._today(), utc_now())

    def refused(self, visit_id: str, reason: cv.EndReason) -> None:
        """A press started no visit: it is recorded as one, ended at once."""
        reason_s = reason.value
        log.info("visit refused (%s)", reason_s, extra=event("visit_refused", session=visit_id, reason=reason_s))
        self._save(refused(visit_id, self._today(), utc_now(), reason.value))

    def first_audio(self, ms: float, warm: bool) -> None:
        """The visit's first assistant audio was heard ``ms`` after the press."""
        if self.current is not None:
            self.current.first_audio(ms, warm)

    def transcript(self, role: str, text: str) -> None:
        """A transcript line of the current visit (only its role and the consent marker are used)."""
        if self.current is not None:
            self.current.transcript(role, text)

    def tool(self, name: str, output: str) -> None:
        """A tool ran in the current visit."""
        if self.current is not None:
            self.current.tool(name, output)

    def ended(self, visit_id: str, reason: cv.EndReason, duration_s: float | None, usage: rs.Usage) -> None:
        """The visit ended: its record is written."""
        tracker, self.current = self.current, None
        if tracker is None or tracker.visit_id != visit_id:
            tracker = VisitTracker(visit_id, self._today(), utc_now())
        self._save(
            tracker.end(
                reason.value,
                utc_now(),
                duration_s or 0.0,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=self._price(usage),
            )
        )

    # -- every input: time in a state, the link -------------------------------------------

    def handled(self, inp: cv.Input, state: cv.State) -> None:
        """The state machine handled ``inp`` and is now in ``state``."""
        now = self._clock()
        if isinstance(inp, _FAILED):
            self.link.failed(now)
        elif isinstance(inp, _CONNECTED):
            self.connected()
        timed = self._timed
        if timed is None or timed[0] is not state:
            self.flush_state(now)
            self._timed = (state, now) if state in TIMED_STATES else None

    def link_failed(self) -> None:
        """A connection attempt outside a visit (the warm standby) failed."""
        self.link.failed(self._clock())

    def connected(self) -> None:
        """A connection attempt succeeded."""
        outage = self.link.ok(self._clock())
        if outage is not None:
            log.info(
                "Realtime link works again after %.0f min",
                outage / 60,
                extra=event("link_restored", down_s=round(outage)),
            )

    def check_link(self) -> None:
        """Warn once when the link has been failing too long."""
        failing = self.link.due_warning(self._clock())
        if failing is not None:
            log.warning(
                "Realtime link failing for %.0f min (%d failed attempts): check the network and the API key",
                failing / 60,
                self.link.failures,
                extra=event("link_down", down_s=round(failing), failures=self.link.failures),
            )

    def flush_state(self, now: float) -> None:
        """Count the time in the current timed state so far."""
        if self._timed is None:
            return
        state, since = self._timed
        self._timed = (state, now)
        if now > since:
            self._write(records.add_state_time, self._today(), state.value, now - since)

    async def run(self) -> None:
        """Periodic duties: the link warning and counting long outages as they last."""
        while True:
            await asyncio.sleep(min(FLUSH_EVERY_S, max(1.0, self.link.warn_after_s / 4)))
            self.check_link()
            self.flush_state(self._clock())

    async def close(self) -> None:
        """Count the last state time and wait for every pending write."""
        self.flush_state(self._clock())
        if self._writes:
            await asyncio.wait(set(self._writes))

    # -- writing, off the loop ------------------------------------------------------------------

    def _save(self, record: VisitRecord) -> None:
        self.saved.append(record)
        self._write(records.save_visit, record)

    def _write(self, func: Callable[..., None], *args: Any) -> None:
        store = self._store

        async def write() -> None:
            try:
                await asyncio.to_thread(func, store, *args)
            except StoreError as exc:  # the numbers must not take the visitor's conversation down
                log.error("visit record not stored: %s", exc, extra=event("store_error"))

        task = asyncio.get_running_loop().create_task(write(), name="visit-log")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
