"""HTTPS POST for the syncer: the standard library's http.client, TLS verification always on.

A new connection per request: a kiosk sends a batch every few minutes, and a fresh
connection never trips over one the network silently dropped. ``timeout_s`` bounds the
whole request, from connect to the last byte of the reply (:mod:`kiosk.leads.deadline`),
not only each socket operation: a server dripping its answer cannot hold the syncer.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from kiosk.leads.deadline import Aborter, Cutoff
from kiosk.leads.proxy import proxy_for

MAX_REPLY_BYTES = 64 * 1024


@dataclass(frozen=True)
class HttpReply:
    """Status, headers (lower-case names) and the start of the body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one request body; raises OSError / TimeoutError when no response came."""

    def post(self, body: bytes, headers: Mapping[str, str]) -> HttpReply:
        """POST ``body`` to the endpoint."""
        ...


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Certificate and host name checks on; the system's CAs or only ``ca_bundle``."""
    ctx = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class HttpTransport:
    """POSTs to one endpoint URL."""

    def __init__(
        self,
        endpoint: str,
        timeout_s: float,
        ca_bundle: Path | None = None,
        *,
        aborter: Aborter | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {endpoint!r}")
        self.host = parts.hostname
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.https = parts.scheme == "https"
        self.timeout_s = timeout_s
        self.context = tls_context(ca_bundle) if self.https else None
        self.aborter = aborter
        self.max_reply_bytes = max_reply_bytes
        self.proxy = proxy_for(parts.scheme, self.host)  # HTTPS_PROXY / NO_PROXY, like the Realtime link

    def post(self, body: bytes, headers: Mapping[str, str]) -> HttpReply:
        """One request on a new connection, all of it within ``timeout_s``; TimeoutError when not."""
        conn: http.client.HTTPConnection
        host, port, path = self.host, self.port, self.path
        if self.proxy is not None:
            host, port = self.proxy.host, self.proxy.port
        if self.https:
            conn = http.client.HTTPSConnection(host, port, timeout=self.timeout_s, context=self.context)
            if self.proxy is not None:  # a CONNECT tunnel: TLS still runs end to end with the CRM
                conn.set_tunnel(self.host, self.port, headers=dict(self.proxy.headers))
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
            if self.proxy is not None:  # plain http (local demo only) goes as an absolute URL
                path = f"http://{self.host}{f':{self.port}' if self.port else ''}{self.path}"
        try:
            with Cutoff(self.timeout_s, lambda: conn.sock, self.aborter):
                conn.request("POST", path, body=body, headers=dict(headers))
                resp = conn.getresponse()
                data = resp.read(self.max_reply_bytes)
                return HttpReply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        except http.client.HTTPException as exc:  # a garbled response: as good as none
            raise ConnectionError(f"bad HTTP response: {exc!r}") from None
        finally:
            conn.close()
