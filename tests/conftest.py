"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No KIOSK_* or credentials from the developer's shell leak into a test."""
    import os

    for key in list(os.environ):
        if key.startswith("KIOSK_") or key in ("CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET"):
            monkeypatch.delenv(key)
    yield


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (the test CRM and SMTP servers)."""
    from tests.synckit import make_cert

    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def port() -> int:
    """A free loopback port."""
    from tests.synckit import free_port

    return free_port()
