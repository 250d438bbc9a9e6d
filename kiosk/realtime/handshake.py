"""Opening a configured Realtime session: the one place that connects and configures.

Every Realtime session the kiosk uses (the warm standby's, a visit's own, a reconnect or
recycle replaying an earlier conversation, the self-test's) is opened here: connect with
the key and time limits from ``[realtime]``, send the full ``session.update`` (or a replay),
and wait for ``session.updated``. What comes back is ready for a visitor.

Every attempt passes one :class:`~kiosk.realtime.connection.AttemptGate` per opener (so
per kiosk): at most ``realtime.max_connects_per_minute`` attempts in any minute, whatever
the service does and however the callers' back-off is configured. A ``session.update`` the
service refuses (an error naming it) is fatal, with the parameter and message it named.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from pydantic import SecretStr

from kiosk.config import RealtimeSettings
from kiosk.errors import FatalRealtimeError, RealtimeError
from kiosk.realtime import session as rs
from kiosk.realtime.connection import AttemptGate, RealtimeConnection, TraceWriter

CONFIGURE_TIMEOUT_S = 10.0


@dataclass
class Opened:
    """A connection whose session the service has confirmed, and its protocol core."""

    conn: RealtimeConnection
    core: rs.RealtimeSession
    opened_at: float  # monotonic (loop) time the socket opened


class Opener:
    """Opens configured Realtime sessions with one set of settings."""

    def __init__(
        self,
        settings: RealtimeSettings,
        api_key: SecretStr | None,
        config: rs.SessionConfig,
        *,
        trace: TraceWriter | None = None,
        configure_timeout_s: float = CONFIGURE_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.config = config
        self._key = api_key
        self._trace = trace
        self._configure_timeout_s = configure_timeout_s
        self.gate = AttemptGate(settings.max_connects_per_minute)
        self.attempts = 0  # connection attempts so far (tests, status)

    async def open(self, *, id_prefix: str, replay: rs.RealtimeSession | None = None) -> Opened:
        """Connect and configure; ``replay`` primes the new session with an earlier conversation.

        Raises FatalRealtimeError (bad key, no quota: do not retry) or RealtimeError
        (unreachable, dropped, or no ``session.updated`` in time: may pass later).
        """
        s = self.settings
        loop = asyncio.get_running_loop()
        # Checked again after each wait: another opener of this kiosk may have taken the slot.
        while (wait := self.gate.wait_s(loop.time())) > 0:  # noqa: ASYNC110 - the wait is a computed time
            await asyncio.sleep(wait)
        self.gate.attempt(loop.time())
        self.attempts += 1
        conn = await RealtimeConnection.open(
            s.url,
            s.model,
            self._key,
            connect_timeout=s.connect_timeout_s,
            ping_interval=s.ping_interval_s,
            trace=self._trace,
        )
        opened_at = loop.time()
        try:
            core = rs.RealtimeSession(self.config, id_prefix=id_prefix)
            if replay is None:
                core.start()
            else:
                replay.replay_into(core)
            await self._configure(conn, core, loop)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        return Opened(conn, core, opened_at)

    async def _configure(
        self, conn: RealtimeConnection, core: rs.RealtimeSession, loop: asyncio.AbstractEventLoop
    ) -> None:
        try:
            async with asyncio.timeout(self._configure_timeout_s):
                try:
                    for e in core.drain():
                        await conn.send(e)
                except RealtimeError:
                    # The socket closed under the send; the frames already received may say
                    # why (an invalid_api_key error), so read them before giving up.
                    pass
                while True:
                    effects = core.receive(await conn.recv(), loop.time())
                    for eff in effects:
                        if isinstance(eff, rs.FatalError):
                            raise FatalRealtimeError(eff.describe())
                        if isinstance(eff, rs.Recycle):
                            # Expired before it was even configured: a failure (with back-off), not a recycle.
                            raise RealtimeError(f"the session ended before it was configured ({eff.reason})")
                    if any(isinstance(eff, rs.Ready) for eff in effects):
                        return
        except TimeoutError:
            raise RealtimeError(f"no session.updated within {self._configure_timeout_s:.0f} s") from None
