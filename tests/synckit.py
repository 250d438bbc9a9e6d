"""Helpers for the sync tests: a manual clock, a self-signed certificate, the reference
receiver (scripts/lead-receiver) served on loopback, and quick lead fixtures."""

from __future__ import annotations

import datetime as dt
import importlib.machinery
import importlib.util
import ipaddress
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import SecretStr

from kiosk.config import NotifySettings, RetentionSettings, Secrets, SyncSettings
from kiosk.leads.records import ConsentEvidence, LeadRecord
from kiosk.leads.store import Store
from kiosk.leads.sync import Syncer

REPO = Path(__file__).resolve().parent.parent
TOKEN, SECRET = "test-token", "test-signing-secret"
CONSENT = ConsentEvidence(disclosure_text="Example Lending may call you.", disclosure_version="v1",
                          channel="kiosk_voice", visitor_words="Yes, I agree.")


def lead(i: int = 0) -> LeadRecord:
    return LeadRecord(name=f"Visitor Number{i}", email=f"visitor{i}@example.com", phone=f"+1415555{i % 10000:04d}",
                      product_type="dscr", session_id=f"s{i}", kiosk_id="k1", analysis={"dscr": 1.3})


def save_leads(store: Store, n: int) -> list[str]:
    """n leads through the real save path; fsync per lead is skipped to keep the suite fast."""
    store.conn.execute("PRAGMA synchronous=OFF")
    try:
        return [store.save_lead(lead(i), CONSENT) for i in range(n)]
    finally:
        store.conn.execute("PRAGMA synchronous=FULL")


class ManualClock:
    """A wall clock that moves only when told."""

    def __init__(self) -> None:
        self.t = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def now(self) -> dt.datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += dt.timedelta(seconds=seconds)


def receiver_module() -> ModuleType:
    """scripts/lead-receiver, imported (it has no .py suffix)."""
    if "lead_receiver" in sys.modules:
        return sys.modules["lead_receiver"]
    path = str(REPO / "scripts" / "lead-receiver")
    loader = importlib.machinery.SourceFileLoader("lead_receiver", path)
    spec = importlib.util.spec_from_loader("lead_receiver", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["lead_receiver"] = mod
    loader.exec_module(mod)
    return mod


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def free_port() -> int:
    """A loopback port nobody listens on (the endpoint is "down")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    receiver: Any  # lead_receiver.LeadReceiver
    url: str


@contextmanager
def serve_receiver(db: Path, cert: tuple[Path, Path], port: int = 0, *, max_skew_s: float | None = None,
                   secret: str = SECRET) -> Iterator[Running]:
    """The reference receiver over HTTPS on 127.0.0.1, in a thread, for the block's duration."""
    mod = receiver_module()
    receiver = mod.LeadReceiver(db, TOKEN, secret.encode(), max_skew_s=max_skew_s)
    server = mod.make_server(receiver, "127.0.0.1", port, server_tls(*cert))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Running(receiver, f"https://127.0.0.1:{server.server_address[1]}/leads")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def sync_settings(url: str, ca: Path, **kw: Any) -> SyncSettings:
    return SyncSettings(endpoint=url, ca_bundle=ca, **{"timeout_s": 5.0, **kw})


def secrets(secret: str = SECRET) -> Secrets:
    return Secrets(sync_token=SecretStr(TOKEN), sync_signing_secret=SecretStr(secret))


def make_syncer(store: Store, sync: SyncSettings, clock: ManualClock, *, notify: NotifySettings | None = None,
                secret: str = SECRET, rand: float = 1.0) -> Syncer:
    return Syncer(store, "k1", sync, notify or NotifySettings(), RetentionSettings(), secrets(secret),
                  clock=clock, rand=lambda: rand)
