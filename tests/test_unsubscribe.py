"""CAN-SPAM for the visitor's follow-up e-mail (issue 17, point 8), with real parts: the tools
as the daemon wires them, a real SQLite store, aiosmtpd with STARTTLS, the ``kiosk`` command
in a subprocess and the reference receiver.

The e-mail as it arrives carries ``List-Unsubscribe`` (a mailto naming the lead and the kiosk;
the one-click URL and ``List-Unsubscribe-Post`` only when configured), the postal address
and the opt-out address in its text. ``kiosk leads unsubscribe`` cancels the queued e-mails,
and its revocation reaches the receiver through the outbox; nothing is e-mailed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kiosk.config import NotifySettings, load_settings
from kiosk.config.checks import check_settings
from kiosk.leads.mail import VISITOR_KIND, Email
from kiosk.leads.store import Store
from tests.mailkit import Smtp, mailer_syncer, notify_settings
from tests.synckit import SECRET, TOKEN, ManualClock, make_syncer, serve_receiver, sync_settings
from tests.test_mail_pairs import VISITOR, kiosk
from tests.toolkit import CHECKOUT_CONFIG, DRAFT, UNSUBSCRIBE, call, make_ctx, make_registry

REG = make_registry()
REVOCATION_SCHEMA = json.loads((files("kiosk") / "schemas" / "consent-revocation.schema.json").read_text())
ONE_CLICK_URL = "https://lender.example/optout"


def raw_header(msg: Any, name: str) -> str | None:
    """A header as it came over the wire (unfolded), not as the parser decodes it: an RFC 2047
    encoded List-Unsubscribe reads fine to Python and not at all to a mail provider."""
    values = [str(v) for k, v in msg.raw_items() if k.lower() == name.lower()]
    assert len(values) <= 1, values
    return values[0].replace("\r\n", "").replace("\n", "") if values else None


def sent_follow_up(tmp_path: Path, cert: tuple[Path, Path], port: int, **notify: Any) -> tuple[str, Any, str]:
    """saveLead + scheduleCall through the daemon's tools, one sync pass to aiosmtpd: (lead id,
    the message as received, the kiosk id)."""
    k = kiosk(tmp_path, cert, port, officer_email="", **notify)
    lead_id = k.save({**DRAFT, "email": VISITOR})
    assert k.call("scheduleCall", {"leadId": lead_id})["emailQueued"] is True
    with Smtp(cert, port) as inbox:
        report = k.syncer.drain()
    assert (report.sent, report.dead, report.retried) == (1, 0, 0), report.errors
    (msg,) = inbox.to(VISITOR)
    return lead_id, msg, k.settings.kiosk_id


def test_the_follow_up_arrives_with_list_unsubscribe_and_the_postal_address(
    tmp_path: Path, cert: tuple[Path, Path], port: int
) -> None:
    lead_id, msg, kiosk_id = sent_follow_up(tmp_path, cert, port)
    subject = f"unsubscribe%20lead%20{lead_id}%20kiosk%20{kiosk_id}"
    assert raw_header(msg, "List-Unsubscribe") == f"<mailto:{UNSUBSCRIBE}?subject={subject}>"
    assert raw_header(msg, "List-Unsubscribe-Post") is None  # no one-click URL configured: no one-click promise
    body = str(msg.get_content())
    assert "1 Main St, Springfield" in body and f"write to {UNSUBSCRIBE}" in body
    assert "UNSUBSCRIBE" not in body  # the old "reply UNSUBSCRIBE" went to a mailbox nobody read


def test_the_one_click_url_and_its_post_header_only_when_configured(
    tmp_path: Path, cert: tuple[Path, Path], port: int
) -> None:
    lead_id, msg, kiosk_id = sent_follow_up(tmp_path, cert, port, unsubscribe_url=ONE_CLICK_URL)
    mailto, one_click = (raw_header(msg, "List-Unsubscribe") or "").split(", ")
    assert mailto.startswith(f"<mailto:{UNSUBSCRIBE}?subject=")
    assert one_click == f"<{ONE_CLICK_URL}?lead={lead_id}&kiosk={kiosk_id}>"
    assert raw_header(msg, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"  # RFC 8058


def test_the_one_click_url_must_be_https_even_on_this_machine() -> None:
    assert NotifySettings(unsubscribe_url="").unsubscribe_url == ""
    for url in ("http://lender.example/optout", "http://127.0.0.1:8080/optout", "https://", "mailto:x@y.example"):
        with pytest.raises(ValueError, match="https://"):
            NotifySettings(unsubscribe_url=url)


def run_kiosk(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    env.update(KIOSK_SECRETS__SYNC_TOKEN=TOKEN, KIOSK_SECRETS__SYNC_SIGNING_SECRET=SECRET)
    return subprocess.run([sys.executable, "-m", "kiosk", "--config", str(cfg), *args], capture_output=True,
                          text=True, timeout=60, check=False, env=env)  # fmt: skip


def test_unsubscribe_cancels_queued_e_mails_and_the_receiver_stores_the_revocation(
    tmp_path: Path, cert: tuple[Path, Path], port: int
) -> None:
    store = Store(tmp_path / "k.db")
    visits = {v: make_ctx(store, v) for v in ("visit-1", "visit-2")}
    first = call(REG, "saveLead", {"leadDraft": DRAFT}, visits["visit-1"])["leadId"]
    second = call(REG, "saveLead", {"leadDraft": {**DRAFT, "email": DRAFT["email"].upper()}}, visits["visit-2"])
    other = call(REG, "saveLead", {"leadDraft": {**DRAFT, "email": "someone.else@example.com"}}, visits["visit-2"])
    second, other = second["leadId"], other["leadId"]
    for lead_id, visit in ((first, "visit-1"), (second, "visit-2"), (other, "visit-2")):
        assert call(REG, "scheduleCall", {"leadId": lead_id}, visits[visit])["emailQueued"] is True
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(f'kiosk_id = "k1"\n[store]\npath = "k.db"\n[notify]\nunsubscribe_address = "{UNSUBSCRIBE}"\n')

    done = run_kiosk(cfg, "leads", "unsubscribe", first)  # the id the mailto's subject names
    assert done.returncode == 0, done.stderr
    assert "e-mail stopped for 2 lead(s)" in done.stdout and "2 queued e-mail(s) cancelled" in done.stdout
    pending = store.conn.execute("SELECT ref FROM outbox WHERE kind = ?", (VISITOR_KIND,)).fetchall()
    assert pending == [(other,)]  # the same address in another visit stops too; another address does not
    for lead_id in (first, second):
        row = store.consent(lead_id)
        assert row is not None and row["email_revoked_at"] and row["status"] == "verified"  # calls stay allowed
        again = call(REG, "scheduleCall", {"leadId": lead_id}, visits[row["session_id"]])
        assert again["emailQueued"] is False  # nothing is queued for an unsubscribed lead
    repeat = run_kiosk(cfg, "leads", "unsubscribe", DRAFT["email"], "--note", "Subject: unsubscribe")
    assert repeat.returncode == 0 and "0 queued e-mail(s) cancelled" in repeat.stdout
    for unknown in ("nobody@example.com", "no-such-lead"):
        assert run_kiosk(cfg, "leads", "unsubscribe", unknown).returncode == 1

    with serve_receiver(tmp_path / "r.db", cert) as rx:
        report = make_syncer(store, sync_settings(rx.url, cert[0]), ManualClock()).drain()
        assert report.dead == 0 and report.retried == 0, report.errors
        revocations = rx.receiver.documents("revocations")
    assert sorted(revocations) == sorted(f"unsubscribe-{i}" for i in (first, second))  # once each, not twice
    for doc in revocations.values():
        jsonschema.validate(doc, REVOCATION_SCHEMA)
        assert doc["channel"] == "email_unsubscribe" and doc["scope"] == "e-mails"
        assert doc["visitor_words"] == f"e-mail unsubscribe request received at {UNSUBSCRIBE}"
    assert revocations[f"unsubscribe-{second}"]["session_id"] == "visit-2"


def test_the_sender_sends_nothing_to_a_lead_that_unsubscribed(
    tmp_path: Path, cert: tuple[Path, Path], port: int
) -> None:
    from kiosk.leads.optout import unsubscribe

    store = Store(tmp_path / "k.db")
    ctx = make_ctx(store)
    lead_id = call(REG, "saveLead", {"leadDraft": DRAFT}, ctx)["leadId"]
    assert unsubscribe(store, DRAFT["email"], "by e-mail").lead_ids == [lead_id]
    # A visitor e-mail queued anyway (by a kiosk before this check, or a race with the command).
    store.enqueue(VISITOR_KIND, lead_id, Email(DRAFT["email"], "Your call", "Hello").to_payload())
    with Smtp(cert, port) as inbox:
        report = mailer_syncer(store, notify_settings(port, cert[0]), ManualClock()).drain()
    assert inbox.messages == [] and report.dead == 0
    assert store.count("outbox", "kind = ?", (VISITOR_KIND,)) == 0  # cancelled, not left to retry


def test_config_check_refuses_e_mail_without_an_unsubscribe_address(tmp_path: Path) -> None:
    overrides = {"notify": {"smtp_host": "smtp.lender.example", "unsubscribe_address": ""}}
    found = check_settings(load_settings(CHECKOUT_CONFIG, overrides=overrides).settings)
    assert [e for e in found.errors if e.startswith("notify.unsubscribe_address is not set")], found.errors
    off = check_settings(load_settings(CHECKOUT_CONFIG, overrides={"notify": {"unsubscribe_address": ""}}).settings)
    assert not [e for e in off.errors if "unsubscribe" in e]  # e-mail off: a warning, the kiosk still runs
    assert [w for w in off.warnings if w.startswith("notify.unsubscribe_address is not set")]
    shipped = check_settings(load_settings(CHECKOUT_CONFIG).settings)
    assert any(w.startswith("notify.unsubscribe_address is the shipped example") for w in shipped.warnings)

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")},
           "KIOSK_NOTIFY__SMTP_HOST": "smtp.lender.example", "KIOSK_NOTIFY__UNSUBSCRIBE_ADDRESS": ""}  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(CHECKOUT_CONFIG), "config", "check"],
                       capture_output=True, text=True, timeout=60, check=False, env=env)  # fmt: skip
    assert r.returncode == os.EX_CONFIG and "notify.unsubscribe_address is not set" in r.stderr
