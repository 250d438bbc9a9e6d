"""Which proxy the CRM upload goes through: ``HTTPS_PROXY`` / ``HTTP_PROXY`` and ``NO_PROXY``,
read the way the Realtime link (websockets) and most tools read them, so a branch network
that needs a proxy gets conversations *and* leads through it.

Only the standard library's parsing of the environment is used (``urllib.request``); the
CONNECT tunnel itself is :meth:`http.client.HTTPConnection.set_tunnel`.
"""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

# In CPython's urllib.request for ages but missing from typeshed: NO_PROXY rules as urllib applies them.
_bypass: Callable[..., bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Proxy:
    """A forward proxy: where to connect, and the headers the CONNECT request carries."""

    host: str
    port: int
    headers: Mapping[str, str] = field(default_factory=dict)


def proxy_for(scheme: str, host: str, env: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy for ``scheme://host`` from the environment, or None (none set, or NO_PROXY covers it)."""
    if env is None:
        proxies = urllib.request.getproxies_environment()
        bypass = _bypass(host)
    else:
        # Same rules over a given mapping (tests, and callers that captured the environment).
        proxies = {k[:-6].lower(): v for k, v in env.items() if k.lower().endswith("_proxy") and v}
        bypass = _bypass(host, proxies)
    url = proxies.get(scheme)
    if not url or bypass:
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        return None
    headers = {}
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
    return Proxy(parts.hostname, parts.port or 8080, headers)
