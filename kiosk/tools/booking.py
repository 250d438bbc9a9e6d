"""scheduleCall: the booking link for the lead's product and this branch, and a follow-up e-mail.

The e-mail is not sent here: it is queued in the outbox (kind ``email_visitor``, one per
lead) with everything the sender needs in ``payload_json``, so it survives outages and a
power cut. It is queued only when the lead's consent evidence is on record and an e-mail
address is still held (retention may have purged it).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kiosk.config import BranchSettings
from kiosk.tools.lending import LendingConfig
from kiosk.tools.registry import Tool, ToolContext
from kiosk.tools.scoring import require_session_lead

log = logging.getLogger(__name__)

EMAIL_KIND = "email_visitor"


class ScheduleCallArgs(BaseModel):
    """Arguments of scheduleCall (the model's contract)."""

    model_config = ConfigDict(extra="ignore")

    leadId: str = Field(min_length=1, max_length=64, description="The leadId saveLead returned in this conversation.")


class _Blank(dict[str, str]):
    """Unknown placeholders stay visible instead of raising (a template typo must not lose a lead)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def followup_email(cfg: LendingConfig, branch: BranchSettings, lead: dict[str, Any], link: str) -> dict[str, Any]:
    """The outbox payload of the follow-up e-mail: recipient, subject, text, and the fields used."""
    fields = _Blank(
        name=str(lead.get("name") or "there"),
        lender_name=branch.lender_name,
        nmls_id=branch.nmls_id,
        branch_name=branch.branch_name,
        product_name=cfg.rate_sheet[lead["product_type"]].name,
        booking_url=link,
        postal_address=cfg.followup.postal_address,
    )
    return {
        "to": lead["email"],
        "subject": cfg.followup.subject.format_map(fields),
        "text": cfg.followup.body.format_map(fields),
        "lead_id": lead["id"],
        "product_type": lead["product_type"],
        "booking_url": link,
    }


def schedule_call(args: ScheduleCallArgs, ctx: ToolContext, cfg: LendingConfig) -> dict[str, Any]:
    """The tool: link for the visitor, e-mail queued when consented."""
    lead = require_session_lead(ctx, args.leadId.strip())
    link = cfg.booking.link(ctx.branch.branch_name, lead["product_type"], ctx.branch.booking_url)
    consented = ctx.store.consent(lead["id"]) is not None
    queued = False
    if consented and lead.get("email"):
        with ctx.store.transaction():
            before = ctx.store.count("outbox", "kind = ? AND ref = ?", (EMAIL_KIND, lead["id"]))
            ctx.store.enqueue(EMAIL_KIND, lead["id"], followup_email(cfg, ctx.branch, lead, link))
        queued = True
        if before == 0:
            log.info("follow-up e-mail queued", extra={"kiosk": {"event": "email_queued", "lead_id": lead["id"]}})
    if queued:
        say = "Say the link is on its way to their e-mail, and that they can pick a time there."
    else:
        say = "No e-mail can be sent; tell the visitor they can book at the link shown, or ask staff."
    return {"leadId": lead["id"], "bookingUrl": link, "emailQueued": queued, "say": say}


def make_tool(cfg: LendingConfig) -> Tool:
    """The scheduleCall tool over the configured booking links and follow-up e-mail."""

    return Tool(
        name="scheduleCall",
        description=(
            "Get the booking link for a saved lead's call with a loan officer, and e-mail it to the visitor "
            "(only with their consent). Use the leadId from saveLead."
        ),
        args=ScheduleCallArgs,
        func=lambda args, ctx: schedule_call(args, ctx, cfg),
    )
