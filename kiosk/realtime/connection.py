"""The Realtime WebSocket connection: the only module that imports ``websockets``.

It moves frames and nothing else: the protocol lives in :mod:`kiosk.realtime.session`.
It adds the Authorization header, a connect time limit and keepalive pings, classifies
failures (a bad key or close code 3000 is fatal: no retry storm), and writes the optional
wire trace. Reconnect policy is :class:`Reconnector` over :func:`kiosk.errors.backoff_delay`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from kiosk.errors import FatalRealtimeError, RealtimeError, backoff_delay
from kiosk.realtime.events import Event, trace_view

log = logging.getLogger(__name__)

CLOSE_INVALID_KEY = 3000


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

    def next_delay(self, now: float) -> float:
        """The wait before the next attempt, after a failure or drop at ``now``."""
        if self._up_since is not None and now - self._up_since >= self._stable:
            self._failures = 0
        self._up_since = None
        self._failures += 1
        return backoff_delay(self._failures, self._base, self._cap, self._rand)


class TraceWriter:
    """JSON lines ``{"t": monotonic s, "dir": "in"|"out", "event": {...}}``, audio elided."""

    def __init__(self, path: Path) -> None:
        self._f: IO[str] = path.open("a", encoding="utf-8")

    def write(self, t: float, direction: str, event: Event) -> None:
        """Record one event."""
        self._f.write(json.dumps({"t": round(t, 6), "dir": direction, "event": trace_view(event)}) + "\n")

    def write_raw(self, t: float, direction: str, text: str | bytes) -> None:
        """Record a raw incoming frame (parsed when it is JSON)."""
        try:
            data: Any = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = {"unparsed": str(text)[:200]}
        self.write(t, direction, data if isinstance(data, dict) else {"unparsed": str(data)[:200]})

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
        try:
            ws = await asyncio.wait_for(
                connect(
                    full,
                    additional_headers={"Authorization": f"Bearer {api_key.get_secret_value()}"},
                    ping_interval=ping_interval,
                    ping_timeout=ping_interval,
                    open_timeout=None,
                    max_size=2**24,
                    user_agent_header="kiosk",
                ),
                timeout=connect_timeout,
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
        rcvd = exc.rcvd
        if rcvd is not None and rcvd.code == CLOSE_INVALID_KEY:
            return FatalRealtimeError(f"Realtime closed the connection: invalid API key (code 3000, {rcvd.reason})")
        code = rcvd.code if rcvd is not None else "none"
        return RealtimeError(f"Realtime connection closed (code {code})")

    async def close(self) -> None:
        """Close politely (and quickly)."""
        await self._ws.close()
