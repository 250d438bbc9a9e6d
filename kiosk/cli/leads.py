"""``kiosk sync`` and ``kiosk leads``: the outbox for technicians, and the e-mail opt-outs
the lender's staff record (``kiosk leads unsubscribe``).

Personal data stays masked (``J*** D**``, ``j***@example.com``, ``+1*******32``) unless
``--reveal`` is given: a screen at a trade-show booth is often read over a shoulder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from kiosk.cli import args as cli_args
from kiosk.config import LoadedConfig, load_settings
from kiosk.errors import UsageError
from kiosk.leads import outbox as ob
from kiosk.leads.store import Store
from kiosk.logs import setup_logging


def register(sub: Any) -> None:
    """Add ``sync`` and ``leads`` to the ``kiosk`` command's sub-parsers."""
    sync = sub.add_parser("sync", help="deliver the outbox (leads to the CRM, e-mails)")
    sync.add_argument("--once", action="store_true", required=True, help="one pass, then exit")
    sync.add_argument("--force", action="store_true", help="ignore retry pauses: try every pending row now")
    sync.add_argument("--purge", action="store_true", help="also apply the retention schedule")
    sync.set_defaults(handler=handle, run=_sync)

    leads = sub.add_parser("leads", help="inspect and re-queue leads")
    lsub = leads.add_subparsers(dest="leads_command", required=True)
    ls = lsub.add_parser("list", help="leads with their delivery state (contact data masked)")
    ls.add_argument("--state", choices=[ob.PENDING, ob.SENT, ob.DEAD], help="only this delivery state")
    ls.add_argument("--limit", type=cli_args.count, default=50)
    ls.add_argument("--reveal", action="store_true", help="show names, e-mails and phones in full")
    ls.add_argument("--json", action="store_true")
    show = lsub.add_parser("show", help="one lead: contact, consent, score, outbox rows")
    show.add_argument("lead_id")
    show.add_argument("--reveal", action="store_true", help="show personal data in full")
    retry = lsub.add_parser("retry", help="re-queue dead-lettered rows")
    retry.add_argument("lead_ids", nargs="*", help="lead ids (all their dead rows)")
    retry.add_argument("--all-dead", action="store_true", help="every dead row")
    unsub = lsub.add_parser(
        "unsubscribe", help="a visitor's e-mail opt-out: stop e-mails to the address, tell the CRM"
    )  # fmt: skip
    unsub.add_argument("target", metavar="LEAD_ID_OR_ADDRESS",
                       help="the lead id the request's subject names, or the e-mail address")  # fmt: skip
    unsub.add_argument("--note", help="what the request said (sent to the CRM with the revocation)")
    leads.set_defaults(handler=handle, run=_leads)


def mask(value: str | None, kind: str) -> str:
    """Enough to recognise a record, not enough to contact the person."""
    if not value:
        return "-"
    if kind == "email" and "@" in value:
        local, domain = value.split("@", 1)
        return f"{local[:1]}***@{domain}"
    if kind == "phone":
        return value[:2] + "*" * max(len(value) - 4, 0) + value[-2:]
    return " ".join(w[:1] + "***" for w in value.split())


def _sync(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from kiosk.leads.sync import Syncer

    s = loaded.settings
    if not s.sync.endpoint and not s.notify.smtp_host:
        print("sync: sync.endpoint is not set and e-mail is off (notify.smtp_host)", file=sys.stderr)
        return os.EX_CONFIG
    store = Store.open_verified(s.store.path, create=False)  # damaged: exit 69 with how to recover
    syncer = Syncer(store, s.kiosk_id, s.sync, s.notify, s.retention, s.secrets)
    try:
        problems = syncer.problems()
        if problems and syncer.mailer is None:
            for p in problems:
                print(f"sync: {p}", file=sys.stderr)
            return os.EX_CONFIG
        if args.purge:
            syncer.purge()
        report = syncer.drain(force=args.force)
        status = syncer.status()
    finally:
        syncer.close()
    print(f"sync: {report.sent} sent, {report.retried} to retry, {report.dead} dead-lettered; {status.line()}")
    for reason in dict.fromkeys(report.errors):
        print(f"sync: {reason}", file=sys.stderr)
    for reason in report.paused:
        print(f"sync: paused, leads kept: {reason}", file=sys.stderr)
    if report.dead:
        return 1
    # Something was due and could not go (down, or a paused channel): not a success.
    return os.EX_UNAVAILABLE if report.retried or report.paused else 0


_LIST = """
    SELECT l.id, l.created_at, l.product_type, l.name, l.email, l.phone, l.purged_at,
           o.state, o.attempts, o.last_error, o.sent_at
    FROM leads l LEFT JOIN outbox o ON o.kind = 'lead' AND o.ref = l.id
"""


def _row(r: Any, reveal: bool) -> dict[str, Any]:
    keys = ("id", "created_at", "product_type", "name", "email", "phone", "purged_at", "state", "attempts",
            "last_error", "sent_at")  # fmt: skip
    d = dict(zip(keys, r, strict=True))
    if not reveal:
        for k in ("name", "email", "phone"):
            d[k] = mask(d[k], k)
    return d


def _leads(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    store = Store(loaded.settings.store.path, create=False)
    try:
        if args.leads_command == "list":
            return _list(store, args)
        if args.leads_command == "show":
            return _show(store, args)
        if args.leads_command == "unsubscribe":
            return _unsubscribe(store, args, loaded)
        return _retry(store, args)
    finally:
        store.close()


def _list(store: Store, args: argparse.Namespace) -> int:
    sql, params = _LIST, []
    if args.state:
        sql += " WHERE o.state = ?"
        params.append(args.state)
    rows = [_row(r, args.reveal) for r in store.conn.execute(sql + " ORDER BY l.created_at DESC LIMIT ?",
                                                              [*params, args.limit])]  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for d in rows:
        err = f"  {d['last_error']}" if d["state"] == ob.DEAD or (d["state"] == ob.PENDING and d["last_error"]) else ""
        print(f"{d['id']}  {d['created_at']}  {d['product_type']:<10} {d['state'] or '-':<7} "
              f"x{d['attempts'] or 0}  {d['name']}  {d['email']}  {d['phone']}{err}")  # fmt: skip
    print(ob.sync_status(store.conn).line())
    return 0


def _show(store: Store, args: argparse.Namespace) -> int:
    row = store.conn.execute(_LIST + " WHERE l.id = ?", [args.lead_id]).fetchone()
    if row is None:
        print(f"leads: no lead {args.lead_id}", file=sys.stderr)
        return 1
    doc: dict[str, Any] = {"lead": _row(row, args.reveal)}
    consent = store.consent(args.lead_id)
    if consent is not None and not args.reveal:
        consent["visitor_words"] = f"<{len(consent['visitor_words'])} characters; --reveal shows them>"
        consent["phone"] = mask(consent.get("phone"), "phone")
    doc["consent"] = consent
    if consent is not None:
        doc["consent_evidence"] = evidence_for_lender(consent, reveal=args.reveal)
    doc["scores"] = store.rows("SELECT * FROM scores WHERE lead_id = ? ORDER BY id", (args.lead_id,))
    outbox = store.rows("SELECT * FROM outbox WHERE ref = ? ORDER BY id", (args.lead_id,))
    for o in outbox:
        if not args.reveal and o["payload_json"]:
            o["payload_json"] = "<hidden; --reveal shows it>"
    doc["outbox"] = outbox
    print(json.dumps(doc, indent=2, default=str))
    return 0


STATUS_MEANS = {
    "verified": "VERIFIED: what the assistant said held every required element, and the visitor agreed.",
    "unverified": "UNVERIFIED: what the assistant said lacked {missing}. Make no automated or AI-voice call or "
    "text to this lead; a person may follow up.",
    "revoked": "REVOKED at {revoked_at}: the visitor withdrew consent. Do not call, text or e-mail this lead.",
    "unchecked": "UNCHECKED: captured before the kiosk checked spoken disclosures; review the words below.",
}


def evidence_for_lender(consent: dict[str, Any], *, reveal: bool) -> dict[str, Any]:
    """The consent evidence in words a lender or auditor reads without knowing the code."""
    status = consent.get("status") or "unchecked"
    missing = json.loads(consent.get("missing_json") or "[]")
    items = json.loads(consent.get("visitor_items_json") or "[]")
    words = [f"{i['item']}: {i['words']}" for i in items] or consent["visitor_words"].splitlines()
    hidden = "<hidden; --reveal shows it>"
    return {
        "status": STATUS_MEANS.get(status, status).format(
            missing=", ".join(missing) or "nothing", revoked_at=consent.get("revoked_at")
        ),
        "number the consent covers": consent.get("phone") if reveal else mask(consent.get("phone"), "phone"),
        "given at (UTC)": consent["given_at"],
        "where": f"kiosk {consent['kiosk_id']}, visit {consent['session_id']}, by voice ({consent['channel']})",
        "the assistant said at the start (AI disclosure)": consent.get("greeting_words") or "(not recorded)",
        "the assistant said, asking for consent (its own transcript)": consent.get("assistant_words")
        or "(not recorded)",
        "the visitor said (transcribed, by conversation item)": words if reveal else hidden,
        "required elements not said": missing,
        "script the assistant was given": consent["disclosure_text"] if reveal else hidden,
        "script version (hash of its wording)": consent["disclosure_version"],
        "e-mail unsubscribed at (UTC)": consent.get("email_revoked_at"),
        "withdrawal": None if status != "revoked" else {
            "at (UTC)": consent.get("revoked_at"),
            "the visitor said": consent.get("revoked_words") if reveal else hidden,
        },
    }


def _retry(store: Store, args: argparse.Namespace) -> int:
    if not args.lead_ids and not args.all_dead:
        raise UsageError("give lead ids or --all-dead")
    n = ob.requeue(store, args.lead_ids, all_dead=args.all_dead)
    print(f"leads: {n} dead row(s) re-queued; `kiosk sync --once` sends them now")
    return 0 if n else 1


def _unsubscribe(store: Store, args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from kiosk.leads.optout import unsubscribe

    mailbox = loaded.settings.notify.unsubscribe_address or "the unsubscribe mailbox"
    done = unsubscribe(store, args.target, args.note or f"e-mail unsubscribe request received at {mailbox}")
    if not done.lead_ids:
        print("leads: no lead on this kiosk has that id or address (its e-mail may be purged already: then "
              "nothing here can e-mail it); honour the request in the CRM", file=sys.stderr)  # fmt: skip
        return 1
    print(f"leads: e-mail stopped for {len(done.lead_ids)} lead(s) ({', '.join(done.lead_ids)}); "
          f"{done.cancelled} queued e-mail(s) cancelled; the CRM gets the revocation at the next sync "
          "(`kiosk sync --once` sends it now)")  # fmt: skip
    return 0


def handle(args: argparse.Namespace) -> int:
    """Run a ``sync`` / ``leads`` command."""
    loaded = load_settings(args.config)
    s = loaded.settings
    setup_logging(s.log.level if args.command == "sync" else "WARNING", redact_pii=s.log.redact_pii)
    run: Callable[[argparse.Namespace, LoadedConfig], int] = args.run
    return run(args, loaded)
