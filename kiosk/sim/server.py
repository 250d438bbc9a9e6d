"""An offline Realtime server that speaks the GA protocol, for the demo, tests and benchmarks.

One :class:`SimServer` listens on loopback at ``/v1/realtime?model=...``. Each connection
gets a :class:`SimSession`: it validates client events like the service (same ``error``
shape), runs an energy VAD over appended audio (``speech_started``/``speech_stopped``/
``committed``), answers turns from a :class:`~kiosk.sim.scenario.Scenario` faster than
real time (audio and transcript deltas), makes the scenario's function calls, honours
``interrupt_response`` and truncation, behaves like the service where the service is
unkind (:class:`~kiosk.sim.options.Habits`) and can inject faults
(:class:`~kiosk.sim.options.Faults`). Every client event it receives is kept in
``received`` so tests can check what a kiosk really sent.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from kiosk.sim.options import Faults, Habits, SimOptions
from kiosk.sim.session import SimSession

log = logging.getLogger(__name__)


__all__ = ["Faults", "Habits", "SimOptions", "SimServer", "SimSession", "serve_until_signal"]


class SimServer:
    """The simulator's WebSocket server on loopback."""

    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        self.sessions: list[SimSession] = []
        self._new_session = asyncio.Condition()
        self._server: Server | None = None
        self.port = 0
        self.auth_headers: list[str | None] = []

    @property
    def url(self) -> str:
        """The base URL to configure a client with (``realtime.url``)."""
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen (port 0 picks a free port)."""
        self._server = await serve(self._handler, host, port, process_request=self._check_request, max_size=2**24)
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        log.info("Realtime simulator listening on %s (scenario %s)", self.url, self.opts.scenario.name)

    async def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.auth_headers.append(request.headers.get("Authorization"))
        if self.opts.faults.hang_handshake:
            await asyncio.Event().wait()  # until the client gives up and the connection goes
        if self.opts.faults.http_status is not None:
            return conn.respond(self.opts.faults.http_status, "refused by fault injection\n")
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") != "/v1/realtime":
            return conn.respond(404, "Not Found\n")
        if not parse_qs(parts.query).get("model"):
            return conn.respond(400, "missing model\n")
        auth = request.headers.get("Authorization")
        if not auth or not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            return conn.respond(401, "missing bearer token\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # set once the handshake is done
        model = parse_qs(urlsplit(ws.request.path).query)["model"][0]
        session = SimSession(ws, self.opts, model)
        self.sessions.append(session)
        async with self._new_session:
            self._new_session.notify_all()
        await session.run()

    async def wait_for_session(self, n: int, *, limit_s: float) -> SimSession:
        """Wait (at most ``limit_s``) until ``n`` connections were made; return the n-th."""
        async with asyncio.timeout(limit_s), self._new_session:
            await self._new_session.wait_for(lambda: len(self.sessions) >= n)
        return self.sessions[n - 1]

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve_until_signal(server: SimServer, announce: Callable[[SimServer], None]) -> None:
    """Run a started simulator until SIGINT/SIGTERM (``kiosk sim serve``, the bench's process)."""
    announce(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()
