"""A forward proxy on 127.0.0.1 for tests: CONNECT tunnels (HTTPS) relayed byte for byte,
every request line recorded, an optional Proxy-Authorization it insists on."""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class ProxyLog:
    """What the proxy saw: request lines, and the Proxy-Authorization headers."""

    requests: list[str] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until either side closes (every wait bounded)."""
    socks = [a, b]
    while True:
        ready, _, _ = select.select(socks, [], [], 10.0)
        if not ready:
            return
        for s in ready:
            data = s.recv(65536)
            if not data:
                return
            (b if s is a else a).sendall(data)


@contextmanager
def serve_proxy() -> Iterator[tuple[str, ProxyLog]]:
    """A CONNECT proxy on an ephemeral loopback port: yields (its URL, its log)."""
    log = ProxyLog()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.connection.settimeout(10.0)
            line = self.rfile.readline(4096).decode("latin-1").strip()
            headers = []
            while (h := self.rfile.readline(4096).decode("latin-1").strip()) != "":
                headers.append(h)
            log.requests.append(line)
            log.auth += [h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("proxy-authorization")]
            method, target, _ = line.split(" ", 2)
            if method != "CONNECT":
                self.wfile.write(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n")
                return
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10.0) as upstream:
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                _relay(self.connection, upstream)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
