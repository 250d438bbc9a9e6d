"""Opened standby: a configured Realtime connection waiting for the next visitor.

Opening a WebSocket and configuring a session costs a few hundred milliseconds that a
visitor would otherwise spend looking at a blinking light. So at start-up, and again
after each visit ends, a fresh connection is opened and configured
(``session.update`` answered by ``session.updated``) in the background and parked. The
next press takes it and greets at once. A parked connection is never reused: each visitor
gets a brand-new server session, so no one inherits another's conversation. It is replaced
before it gets old (the service ends sessions at 60 minutes) and when it drops.

Nothing the service sends can end it: the session core skips broken frames, and anything
else unexpected is logged and retried with back-off like a failed connection. It stops
for good only when the service refuses the kiosk (a bad key, no quota, a refused
configuration), found by itself or by a visit (:meth:`Standby.stop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from kiosk.errors import FatalRealtimeError, RealtimeError
from kiosk.logs import event
from kiosk.realtime import session as rs
from kiosk.realtime.connection import Reconnector
from kiosk.realtime.handshake import Opened, Opener

log = logging.getLogger(__name__)


class Standby:
    """Keeps at most one warm connection; ``take`` hands it over."""

    def __init__(
        self,
        opener: Opener,
        *,
        max_age_s: float,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 30.0,
        on_ready: Callable[[], None] = lambda: None,
        on_fatal: Callable[[str], None] = lambda reason: None,
        on_failed: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._opener = opener
        self._on_ready = on_ready
        self._on_failed = on_failed  # an attempt failed (will be retried): the link's health
        self._on_fatal = on_fatal
        self._max_age_s = max_age_s
        self._recon = Reconnector(backoff_base_s, backoff_cap_s, stable_after=max_age_s)
        self._warm: Opened | None = None
        self._parked: asyncio.Task[None] | None = None
        self._wanted = asyncio.Event()
        self._wanted.set()  # at start-up
        self.ready_event = asyncio.Event()  # set while a warm connection waits
        self.settled = asyncio.Event()  # the latest attempt finished (ready, failed or refused)
        self.opened = 0  # connections configured so far (tests, status)
        self.fatal = False
        self.stopped = asyncio.Event()  # run() has returned: no more connections

    @property
    def ready(self) -> bool:
        """A warm connection is waiting."""
        return self._warm is not None

    def take(self) -> Opened | None:
        """The warm connection, if any, now owned by the caller; None means connect yourself."""
        warm, self._warm = self._warm, None
        self.ready_event.clear()
        self.settled.clear()
        if self._parked is not None:
            self._parked.cancel()
            self._parked = None
        return warm

    def refill(self) -> None:
        """A visit ended: prepare the next connection."""
        self._wanted.set()

    def stop(self) -> None:
        """The service refused the kiosk (seen by a visit): no more connections until restarted."""
        self.fatal = True
        self._wanted.set()  # wake run(), which sees ``fatal`` and returns

    async def run(self) -> None:
        """Keep a warm connection while wanted; never raises (except cancellation)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wanted.wait()
                if self.fatal:
                    return
                if self._warm is not None:
                    self._wanted.clear()
                    continue
                try:
                    warm = await self._connect()
                except FatalRealtimeError as exc:
                    # A bad key or no quota: say so now (ERROR light), not at the next press.
                    log.error(
                        "Realtime refused the kiosk: %s (no retry until restarted)",
                        exc,
                        extra=event("realtime_fatal"),
                    )
                    self.fatal = True
                    self.settled.set()
                    self._on_fatal(str(exc))
                    return
                except Exception as exc:  # anything else is retried too: the daemon must go on
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise asyncio.CancelledError from None  # a library lost our cancellation
                    self.settled.set()
                    self._on_failed(str(exc))
                    delay = self._recon.next_delay(loop.time())
                    expected = isinstance(exc, RealtimeError | TimeoutError | OSError)
                    log.log(
                        logging.INFO if expected else logging.ERROR,
                        "warm standby: connect failed (%s); next try in %.1f s",
                        exc if expected else repr(exc),
                        delay,
                        extra=event("standby_wait"),
                        exc_info=not expected,
                    )
                    await asyncio.sleep(delay)
                    continue
                if self.fatal:  # stopped while it connected
                    await warm.conn.close()
                    return
                self._recon.connected(warm.opened_at)
                self._warm = warm
                self.ready_event.set()
                self.settled.set()
                self._wanted.clear()
                self._parked = asyncio.create_task(self._park(warm), name="standby-parked")
                self._on_ready()
        finally:
            await self.close()
            self.stopped.set()

    async def _connect(self) -> Opened:
        opened = await self._opener.open(id_prefix=f"w{uuid.uuid4().hex[:6]}")
        self.opened += 1
        log.info("warm standby ready", extra=event("standby_ready"))
        return opened

    async def _park(self, warm: Opened) -> None:
        """Watch the parked connection: replace it when it drops or gets old."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(0.0, warm.opened_at + self._max_age_s - loop.time())):
                while True:
                    # Nothing is expected while parked; anything that arrives is kept in
                    # the core's view (e.g. rate_limits.updated) and a close ends the wait.
                    # A refusal (an invalid_api_key error, a close naming it) stops the
                    # standby now; an expiry replaces the connection.
                    for eff in warm.core.receive(await warm.conn.recv(), loop.time()):
                        if isinstance(eff, rs.FatalError):
                            raise FatalRealtimeError(eff.describe())
                        if isinstance(eff, rs.Recycle):
                            raise RealtimeError(f"the parked session ended ({eff.reason})")
        except FatalRealtimeError as exc:
            log.error("Realtime refused the kiosk: %s (no retry until restarted)", exc, extra=event("realtime_fatal"))
            self.stop()
            self._on_fatal(str(exc))
        except (RealtimeError, TimeoutError, OSError) as exc:
            aged = isinstance(exc, TimeoutError)
            log.info("warm standby replaced (%s)", "old" if aged else str(exc), extra=event("standby_replaced"))
            if self._warm is warm and not aged:
                # Dropped or expired: the same back-off as a failed connect (it restarts
                # small after a connection that stayed up). A service that expires every
                # parked session at once would otherwise have the standby use up the
                # kiosk's connection attempts, and a visit's own reconnects wait for them.
                self._warm = None
                self.ready_event.clear()
                with contextlib.suppress(Exception):
                    await warm.conn.close()
                await asyncio.sleep(self._recon.next_delay(loop.time()))
                self._wanted.set()
                return
        if self._warm is warm:
            self._warm = None
            self.ready_event.clear()
            with contextlib.suppress(Exception):
                await warm.conn.close()
            self._wanted.set()

    async def close(self) -> None:
        """Close the parked connection (shutdown)."""
        warm = self.take()
        if warm is not None:
            with contextlib.suppress(Exception):
                await warm.conn.close()
