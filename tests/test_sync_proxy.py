"""The CRM upload honours HTTPS_PROXY and NO_PROXY (issue 17, point 9), through a real
CONNECT proxy and the reference receiver, both on loopback."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kiosk.leads.proxy import proxy_for
from kiosk.leads.store import Store
from tests.proxykit import serve_proxy
from tests.synckit import ManualClock, make_syncer, save_leads, serve_receiver, sync_settings


def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_leads_sync_through_the_https_proxy(tmp_path: Path, cert: tuple[Path, Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _clean(monkeypatch)
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    with serve_proxy() as (proxy_url, seen), serve_receiver(tmp_path / "r.db", cert) as rx:
        monkeypatch.setenv("HTTPS_PROXY", proxy_url.replace("http://", "http://kiosk:s%40cret@"))
        report = make_syncer(store, sync_settings(rx.url, cert[0]), ManualClock()).drain()
        assert report.sent == 1, report
        assert lead_id in rx.receiver.stored()
    port = rx.url.split(":")[2].split("/")[0]
    assert [r.rsplit(" ", 1)[0] for r in seen.requests] == [f"CONNECT 127.0.0.1:{port}"]
    assert seen.auth == ["Basic " + base64.b64encode(b"kiosk:s@cret").decode()]
    store.close()


def test_no_proxy_sends_directly(tmp_path: Path, cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _clean(monkeypatch)
    store = Store(tmp_path / "k.db")
    save_leads(store, 1)
    with serve_proxy() as (proxy_url, seen), serve_receiver(tmp_path / "r.db", cert) as rx:
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        assert make_syncer(store, sync_settings(rx.url, cert[0]), ManualClock()).drain().sent == 1
    assert seen.requests == []
    store.close()


def test_proxy_rules() -> None:
    env = {"HTTPS_PROXY": "proxy.branch:3128", "NO_PROXY": ".internal"}
    p = proxy_for("https", "crm.example.com", env)
    assert p is not None and (p.host, p.port) == ("proxy.branch", 3128)
    assert proxy_for("https", "crm.internal", env) is None
    assert proxy_for("https", "crm.example.com", {}) is None
