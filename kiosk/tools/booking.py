"""scheduleCall: the booking link for the lead's product and this branch, and a follow-up e-mail.

The e-mail is not sent here: it is queued in the outbox (kind ``email_visitor``, one per
lead) as a :class:`kiosk.leads.mail.Email` written from ``templates/visitor_email.txt``, so
it survives outages and a power cut. It is queued only when the lead's consent evidence is
on record, not withdrawn nor unsubscribed from e-mail, and an e-mail address is still held
(retention may have purged it).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kiosk.leads.mail import VISITOR_KIND, Composer, MailError
from kiosk.leads.optout import mail_allowed
from kiosk.logs import event
from kiosk.tools.lending import LendingConfig
from kiosk.tools.registry import Tool, ToolContext
from kiosk.tools.scoring import require_session_lead

log = logging.getLogger(__name__)


class ScheduleCallArgs(BaseModel):
    """Arguments of scheduleCall (the model's contract)."""

    model_config = ConfigDict(extra="ignore")

    leadId: str = Field(min_length=1, max_length=64, description="The leadId saveLead returned in this conversation.")


def queue_followup(ctx: ToolContext, composer: Composer, lead: dict[str, Any], product_name: str, link: str) -> bool:
    """Queue the visitor's follow-up e-mail (once per lead); False when none can go out."""
    if not mail_allowed(ctx.store.consent(lead["id"])) or not lead.get("email"):
        return False
    try:
        email = composer.visitor(to=lead["email"], name=lead.get("name"), product_name=product_name,
                                 booking_url=link, lead_id=lead["id"], kiosk_id=lead["kiosk_id"])  # fmt: skip
    except MailError as exc:
        # The visitor still gets the link on screen and in speech; ops see why the e-mail did not go.
        fields = event("email_error", session=ctx.visit_id, lead_id=lead["id"], kind=VISITOR_KIND)
        log.error("follow-up e-mail not queued: %s", exc, extra=fields)
        return False
    with ctx.store.transaction():
        before = ctx.store.count("outbox", "kind = ? AND ref = ?", (VISITOR_KIND, lead["id"]))
        ctx.store.enqueue(VISITOR_KIND, lead["id"], email.to_payload())
    if before == 0:
        log.info("follow-up e-mail queued", extra=event("email_queued", session=ctx.visit_id, lead_id=lead["id"]))
    return True


def schedule_call(args: ScheduleCallArgs, ctx: ToolContext, cfg: LendingConfig, composer: Composer) -> dict[str, Any]:
    """The tool: link for the visitor, e-mail queued when consented."""
    lead = require_session_lead(ctx, args.leadId.strip())
    product = lead["product_type"]
    link = cfg.booking.link(ctx.branch.branch_name, product, ctx.branch.booking_url)
    queued = queue_followup(ctx, composer, lead, cfg.rate_sheet[product].name, link)
    if queued:
        say = "Say the link is on its way to their e-mail, and that they can pick a time there."
    else:
        say = "No e-mail can be sent; tell the visitor they can book at the link shown, or ask staff."
    return {"leadId": lead["id"], "bookingUrl": link, "emailQueued": queued, "say": say}


def make_tool(cfg: LendingConfig, composer: Composer) -> Tool:
    """The scheduleCall tool over the configured booking links; the e-mail is written by ``composer``."""

    return Tool(
        name="scheduleCall",
        description=(
            "Get the booking link for a saved lead's call with a loan officer, and e-mail it to the visitor "
            "(only with their consent). Use the leadId from saveLead."
        ),
        args=ScheduleCallArgs,
        func=lambda args, ctx: schedule_call(args, ctx, cfg, composer),
    )
