"""E-mail contracts as pairs: the tools that queue an e-mail and the syncer that sends it,
both real, against a real SMTP server (aiosmtpd, STARTTLS, login) on loopback.

The tools come from the daemon's own wiring (``catalog.build_registry(settings)``), so
what is tested is what a kiosk runs: saveLead / scheduleCall -> outbox -> ``Syncer.drain()``
-> the inbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kiosk.config import Settings, load_settings
from kiosk.leads import outbox as ob
from kiosk.leads.store import Store
from kiosk.leads.sync import Syncer
from kiosk.logs import fields_of
from kiosk.tools import catalog
from kiosk.tools.registry import ToolContext, ToolRegistry
from tests.mailkit import OFFICER, TEMPLATES, Inbox, Smtp, smtp_secrets, smtp_values
from tests.synckit import ManualClock
from tests.toolkit import CHECKOUT_CONFIG, DEAL, DRAFT, UNSUBSCRIBE

VISITOR = "jane.doe@example.com"
# Scores "qualified" with the shipped rubric after analyzeDeal(DEAL); plain DRAFT does not.
STRONG = {**DRAFT, "email": VISITOR, "timeline": "under_30_days", "occupancy": "investment"}
WEAK = {**STRONG, "occupancy": "owner_occupied"}  # not an investor loan: disqualified


@dataclass
class Kiosk:
    """The kiosk's side of the pair: settings, its tools, one visitor's scope, and the syncer."""

    settings: Settings
    store: Store
    tools: ToolRegistry
    ctx: ToolContext
    syncer: Syncer

    def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """One tool call as the model makes it; the decoded output."""
        out: dict[str, Any] = json.loads(asyncio.run(self.tools.call(name, json.dumps(args), self.ctx)))
        return out

    def save(self, draft: dict[str, Any]) -> str:
        """saveLead, which must succeed; the lead id."""
        out = self.call("saveLead", {"leadDraft": draft})
        assert out.get("saved") is True, out
        return str(out["leadId"])


def kiosk(tmp_path: Path, cert: tuple[Path, Path], port: int, **notify: Any) -> Kiosk:
    """The shipped config, pointed at a temp database and the test SMTP server."""
    settings = load_settings(CHECKOUT_CONFIG, overrides={
        "store": {"path": tmp_path / "kiosk.db"},
        "notify": smtp_values(port, cert[0], **notify),
        "branch": {"branch_name": "Riverside booth"},  # no branch link in lending.toml: the product's applies
    }).settings  # fmt: skip
    store = Store(settings.store.path)
    ctx = catalog.tool_site(settings, store).visit("visit-1")
    ctx.transcript.append(("visitor", "Yes, I agree."))
    syncer = Syncer(Store(settings.store.path), settings.kiosk_id, settings.sync, settings.notify,
                    settings.retention, smtp_secrets(), clock=ManualClock(), rand=lambda: 1.0)  # fmt: skip
    return Kiosk(settings, store, catalog.build_registry(settings), ctx, syncer)


def bodies(inbox: Inbox, address: str) -> list[str]:
    return [str(msg.get_content()) for msg in inbox.to(address)]


def test_schedule_call_follow_up_arrives_once_with_the_products_link(
    tmp_path: Path, cert: tuple[Path, Path], port: int
) -> None:
    k = kiosk(tmp_path, cert, port, officer_email="")
    lead_id = k.save({**DRAFT, "email": VISITOR, "productType": "fix_flip"})
    with Smtp(cert, port) as inbox:
        for _ in range(2):  # asked twice: still one e-mail
            out = k.call("scheduleCall", {"leadId": lead_id})
            assert out["emailQueued"] is True and out["bookingUrl"] == "https://example.com/book/flip"
            report = k.syncer.drain()
            assert (report.retried, report.dead) == (0, 0), report.errors
        assert len(inbox.messages) == 1
        (body,) = bodies(inbox, VISITOR)
        k.syncer.drain()
    assert len(inbox.messages) == 1
    assert "https://example.com/book/flip" in body and "fix-and-flip loan" in body
    assert k.settings.notify.postal_address in body and UNSUBSCRIBE in body  # CAN-SPAM
    assert inbox.to(VISITOR)[0]["Subject"] == "Your call with Example Lending LLC"
    assert k.store.count("outbox", "kind = 'email_visitor' AND state = 'sent'") == 1


def test_a_qualified_lead_e_mails_the_loan_officer_once(tmp_path: Path, cert: tuple[Path, Path], port: int) -> None:
    k = kiosk(tmp_path, cert, port)
    k.call("analyzeDeal", DEAL)
    good = k.save(STRONG)
    weak = k.save(WEAK)
    assert [k.store.latest_score(i)["disposition"] for i in (good, weak)] == ["qualified", "disqualified"]  # type: ignore[index]
    with Smtp(cert, port) as inbox:
        assert k.syncer.drain().dead == 0
        k.syncer.drain()
    (body,) = bodies(inbox, OFFICER)  # one, and only about the qualified lead
    assert good in body and weak not in body and "+14155550132" in body
    assert inbox.to(OFFICER)[0]["Subject"].startswith("Qualified lead from Riverside booth: dscr, score ")
    assert len(inbox.messages) == 1  # the visitor gets nothing without asking (scheduleCall)


def test_without_an_officer_address_no_officer_e_mail(tmp_path: Path, cert: tuple[Path, Path], port: int) -> None:
    k = kiosk(tmp_path, cert, port, officer_email="")
    k.call("analyzeDeal", DEAL)
    k.save(STRONG)
    with Smtp(cert, port) as inbox:
        k.syncer.drain()
    assert inbox.messages == []
    assert k.store.count("outbox", "kind != 'lead'") == 0


def test_a_template_broken_on_a_running_kiosk_costs_the_e_mail_never_the_lead(
    tmp_path: Path, cert: tuple[Path, Path], port: int, caplog: pytest.LogCaptureFixture
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    k = kiosk(tmp_path, cert, port, templates_dir=templates)
    k.call("analyzeDeal", DEAL)
    # The operator edits the templates while the kiosk runs, with placeholders it does not know.
    for name in ("officer_email.txt", "visitor_email.txt"):
        path = templates / name
        path.write_text(path.read_text().replace("$name", "$first_name"))
    with caplog.at_level(logging.ERROR):
        lead_id = k.save(STRONG)
        out = k.call("scheduleCall", {"leadId": lead_id})
    # The lead, its evidence, its score and its CRM row are stored; the assistant does not promise an e-mail.
    assert [k.store.count(t) for t in ("leads", "consent", "scores")] == [1, 1, 1]
    assert k.store.count("outbox", "kind = 'lead' AND ref = ?", (lead_id,)) == 1
    assert out["emailQueued"] is False and "No e-mail can be sent" in out["say"]
    assert k.store.count("outbox", "kind != 'lead'") == 0
    errors = [fields_of(r) for r in caplog.records if fields_of(r).get("event") == "email_error"]
    assert [e["kind"] for e in errors] == ["email_officer", "email_visitor"]
    assert all(e["lead_id"] == lead_id for e in errors)
    assert "$first_name" in caplog.text and VISITOR not in caplog.text


def test_the_officer_e_mail_commits_with_the_lead_or_not_at_all(
    tmp_path: Path, cert: tuple[Path, Path], port: int
) -> None:
    k = kiosk(tmp_path, cert, port)
    k.call("analyzeDeal", DEAL)
    # The disk refuses the officer's row (as a full disk would, half-way through the save).
    k.store.conn.execute(
        "CREATE TRIGGER refuse_officer BEFORE INSERT ON outbox WHEN NEW.kind = 'email_officer' "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    out = k.call("saveLead", {"leadDraft": STRONG})
    assert out == {"error": "the kiosk could not store that right now",
                   "fix": "apologise and offer to have someone follow up another way"}  # fmt: skip
    assert [k.store.count(t) for t in ("leads", "consent", "scores", "outbox")] == [0, 0, 0, 0]
    assert not k.ctx.lead_ids  # the visitor's scope holds no lead that does not exist
    k.store.conn.execute("DROP TRIGGER refuse_officer")
    lead_id = k.save(STRONG)  # the model retries: now everything lands, once
    rows = k.store.conn.execute("SELECT kind FROM outbox WHERE ref = ? ORDER BY kind", (lead_id,)).fetchall()
    assert [r[0] for r in rows] == ["email_officer", "lead"]


def test_the_mail_kinds_the_writers_use_are_the_ones_the_syncer_sends() -> None:
    from kiosk.leads.mail import OFFICER_KIND, VISITOR_KIND

    assert set(ob.MAIL_KINDS) == {OFFICER_KIND, VISITOR_KIND}
