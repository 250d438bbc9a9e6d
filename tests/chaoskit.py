"""A hostile CRM for the chaos tests: a raw TCP (or TLS) server on loopback whose answer to
each request is a chosen behaviour, with the reference receiver (scripts/lead-receiver)
behind it, so "stored once" is judged by the real thing."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.synckit import SECRET, TOKEN, receiver_module


@dataclass
class Request:
    """One request as the hostile server read it, and the socket to answer on."""

    sock: socket.socket
    headers: dict[str, str]
    body: bytes
    server: HostileCrm

    def store(self) -> int:
        """Hand the request to the reference receiver (it stores each lead id once); its status."""
        (status, _, _), _ = self.server.receiver.handle(self.headers, self.body)
        return int(status)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.send(head.encode("latin-1") + b"\r\n" + body)

    def drip(self, data: bytes, every_s: float) -> None:
        """Send ``data`` one byte at a time until done, the client leaves, or the server stops."""
        for i in range(len(data)):
            if self.server.stopping.wait(every_s):
                return
            try:
                self.send(data[i : i + 1])
            except OSError:
                return

    def reset(self) -> None:
        """Close with a TCP reset (RST), not a polite FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


Behaviour = Callable[[Request], None]


def good(req: Request) -> None:
    """What a well-behaved CRM does: the receiver's own answer."""
    (status, headers, body), _ = req.server.receiver.handle(req.headers, req.body)
    req.answer(status, json.dumps(body).encode(), headers)


class HostileCrm:
    """Serves ``behaviour`` (changeable between passes) on 127.0.0.1, with or without TLS."""

    def __init__(self, receiver_db: Path, tls: ssl.SSLContext | None = None) -> None:
        self.receiver: Any = receiver_module().LeadReceiver(receiver_db, TOKEN, SECRET.encode(), max_skew_s=None)
        self.tls = tls
        self.behaviour: Behaviour = good
        self.stopping = threading.Event()
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def url(self, scheme: str = "https") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/leads"

    def __enter__(self) -> HostileCrm:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._acceptor.join(5)
        for t in self._threads:
            t.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError, ValueError):
            sock = self.tls.wrap_socket(conn, server_side=True) if self.tls else conn
            with sock:
                req = read_request(sock, self)
                if req is not None:
                    self.requests += 1
                    self.behaviour(req)


def read_request(sock: socket.socket, server: HostileCrm) -> Request | None:
    """One HTTP/1.1 request with a Content-Length body; None when the client sent none."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[1:]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return Request(sock, headers, rest[:length], server)


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """Seconds since the block began (a monotonic clock)."""
    start = time.monotonic()
    yield lambda: time.monotonic() - start
