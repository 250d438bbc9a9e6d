"""The Realtime WebSocket connection: the only module that imports ``websockets``.

It moves frames and nothing else: the protocol lives in :mod:`kiosk.realtime.session`.
It adds the Authorization header, a connect time limit and keepalive pings, a deliberate
frame size limit (:data:`~kiosk.realtime.frames.WEBSOCKET_MAX_BYTES`), classifies closes by
their reason text (close code 3000 ends any invalid request; only a reason naming a fatal
refusal, such as ``invalid_request_error.invalid_api_key``, is fatal), and writes the
optional wire trace. Reconnect policy is :class:`Reconnector` over
:func:`kiosk.errors.backoff_delay`, and :class:`AttemptGate` holds every opener of a kiosk
to a number of connection attempts a minute whatever the service does.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import random
import ssl
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from kiosk.errors import FatalRealtimeError, RealtimeError, backoff_delay
from kiosk.realtime import failures
from kiosk.realtime.events import Event, trace_view
from kiosk.realtime.frames import WEBSOCKET_MAX_BYTES

log = logging.getLogger(__name__)

WINDOW_S = 60.0
TRACE_MAX_BYTES = 20 * 1024 * 1024  # per file; one older file is kept


@functools.cache
def client_tls() -> ssl.SSLContext:
    """The one TLS context of all the kiosk's Realtime connections (``wss://``), made at the first.

    Left to itself, asyncio makes a default context for each connection: the system's CA
    bundle parsed again every time, 31 ms of the event loop on the development VM, and
    0.8 MB resident for each connection open (the warm standby and a visit's: README "Memory").
    """
    return ssl.create_default_context()


class Reconnector:
    """Delays between connection attempts; reset once a connection stayed up long enough."""

    def __init__(self, base: float, cap: float, stable_after: float, rng: random.Random | None = None) -> None:
        self._base, self._cap, self._stable = base, cap, stable_after
        self._rand = (rng or random.Random()).random
        self._failures = 0
        self._up_since: float | None = None

    def connected(self, now: float) -> None:
        """A connection opened at ``now``."""
        self._up_since = now

    @property
    def failures(self) -> int:
        """Failures (and early expiries) since the last connection that stayed up long enough."""
        return self._failures

    def next_delay(self, now: float) -> float:
        """The wait before the next attempt, after a failure or drop at ``now``."""
        if self._up_since is not None and now - self._up_since >= self._stable:
            self._failures = 0
        self._up_since = None
        self._failures += 1
        return backoff_delay(self._failures, self._base, self._cap, self._rand)

    def recycle_delay(self, now: float) -> float:
        """The wait before replacing a connection that must be recycled (expired, or old).

        None after a connection that stayed up long enough (the planned recycle, a real
        60-minute expiry): the visitor must not notice. A connection that expired soon
        after it opened is a misbehaving service and waits like a failure.
        """
        if self._up_since is not None and now - self._up_since >= self._stable:
            self._failures = 0
            self._up_since = None
            return 0.0
        return self.next_delay(now)


class AttemptGate:
    """At most ``per_minute`` connection attempts in any 60 s, for all of a kiosk's openers.

    Back-off is per loop (the standby's, each visit's); this is the guarantee over all of
    them together, whatever the service does. Pure: the caller passes the time and sleeps.
    """

    def __init__(self, per_minute: int) -> None:
        self._limit = per_minute
        self._times: deque[float] = deque()

    def wait_s(self, now: float) -> float:
        """How long to wait before the next attempt may start (0: go now)."""
        while self._times and now - self._times[0] >= WINDOW_S:
            self._times.popleft()
        if len(self._times) < self._limit:
            return 0.0
        return self._times[0] + WINDOW_S - now

    def attempt(self, now: float) -> None:
        """An attempt starts at ``now``."""
        self._times.append(now)


class TraceWriter:
    """JSON lines ``{"t": monotonic s, "dir": "in"|"out", "event": {...}}``, audio elided.

    The trace holds what visitors said and gave (transcripts, names, e-mail, phone): it is
    created 0600, and when it reaches ``max_bytes`` it moves to ``<path>.1`` (replacing the
    one before) and starts anew, so it never holds more than twice that.
    """

    def __init__(self, path: Path, max_bytes: int = TRACE_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._f: IO[str] = self._open()

    def _open(self) -> IO[str]:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # an older trace made with wider modes
        return os.fdopen(fd, "a", encoding="utf-8")

    def write(self, t: float, direction: str, event: Event) -> None:
        """Record one event (rotating first when the file is full)."""
        line = json.dumps({"t": round(t, 6), "dir": direction, "event": trace_view(event)}) + "\n"
        if self._f.tell() + len(line) > self.max_bytes:
            self._f.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._f = self._open()
        self._f.write(line)

    def write_raw(self, t: float, direction: str, text: str | bytes) -> None:
        """Record a raw incoming frame (parsed when it is JSON; anything else is summarised)."""
        try:
            data: Any = json.loads(text)
            if isinstance(data, dict):
                self.write(t, direction, data)
                return
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deeply to re-encode
            pass
        self.write(t, direction, {"unparsed": str(text[:200]), "length": len(text)})

    def close(self) -> None:
        """Flush and close the file."""
        self._f.close()


class RealtimeConnection:
    """One WebSocket to the Realtime service (or the simulator)."""

    def __init__(self, ws: ClientConnection, trace: TraceWriter | None) -> None:
        self._ws = ws
        self._trace = trace
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(
        cls,
        url: str,
        model: str,
        api_key: SecretStr | None,
        *,
        connect_timeout: float,
        ping_interval: float,
        trace: TraceWriter | None = None,
    ) -> RealtimeConnection:
        """Connect; RealtimeError (retryable) or FatalRealtimeError (bad key) on failure."""
        if api_key is None:
            raise FatalRealtimeError("no OpenAI API key configured (credential openai_api_key)")
        full = f"{url}?{urlencode({'model': model})}"
        tls: dict[str, Any] = {"ssl": client_tls()} if url.startswith("wss:") else {}
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that arrives as the handshake fails, and the cancelled caller would retry forever.
            async with asyncio.timeout(connect_timeout):
                ws = await connect(
                    full,
                    **tls,
                    additional_headers={"Authorization": f"Bearer {api_key.get_secret_value()}"},
                    ping_interval=ping_interval,
                    ping_timeout=ping_interval,
                    open_timeout=None,
                    max_size=WEBSOCKET_MAX_BYTES,
                    user_agent_header="kiosk",
                )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise FatalRealtimeError(f"Realtime refused the API key (HTTP {status})") from None
            raise RealtimeError(f"Realtime handshake failed: HTTP {status}") from None
        except TimeoutError:
            raise RealtimeError(f"Realtime connect timed out after {connect_timeout:.0f} s") from None
        except (OSError, InvalidHandshake) as exc:
            raise RealtimeError(f"Realtime connect failed: {exc}") from None
        return cls(ws, trace)

    async def send(self, event: Event) -> None:
        """Send one client event."""
        if self._trace is not None:
            self._trace.write(self._loop.time(), "out", event)
        try:
            await self._ws.send(json.dumps(event, separators=(",", ":")))
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None

    async def pump(self, drain: Callable[[], list[Event]], kick: asyncio.Event) -> None:
        """The connection's single sender: each time ``kick`` is set, send what ``drain``
        returns, in order (a session core's queued client events). Runs until cancelled."""
        kick.set()
        while True:
            await kick.wait()
            kick.clear()
            for e in drain():
                await self.send(e)

    async def recv(self) -> str | bytes:
        """The next server frame; RealtimeError / FatalRealtimeError when the socket closes."""
        try:
            frame = await self._ws.recv()
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None
        if self._trace is not None:
            self._trace.write_raw(self._loop.time(), "in", frame)
        return frame

    @staticmethod
    def _closed_error(exc: ConnectionClosed) -> RealtimeError:
        """Classified by the close reason's text: only a fatal refusal is not worth a retry."""
        rcvd = exc.rcvd if exc.rcvd is not None else exc.sent  # 1009 (too big) is our own close
        code, reason = (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")
        text = failures.describe_close(code, reason)
        return FatalRealtimeError(text) if failures.close_is_fatal(code, reason) else RealtimeError(text)

    async def close(self) -> None:
        """Close politely (and quickly)."""
        await self._ws.close()
