"""saveLead: a lead is stored only with the visitor's spoken consent, with proof of it.

The consent disclosure names the lender and the number, says the calls may use an
automated or AI voice, that consent is not a condition of any loan, and how to opt out
(TCPA). The evidence stored with the lead is what was *said*: the assistant's own
transcript of the consent turn and of the greeting, the visitor's words by item id, the
number covered, the script and its hash (the version), the UTC time, kiosk and visit
(:mod:`kiosk.tools.consent`). A spoken turn missing a required element is saved as
"unverified": no automated call or text may be made on it. Contact details are validated
and normalized (E.164 phones).
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any, Literal

import phonenumbers
from pydantic import Field, StrictBool

from kiosk.config import BranchSettings
from kiosk.errors import ToolError
from kiosk.leads.mail import OFFICER_KIND, Composer, Email, MailError
from kiosk.leads.records import ConsentEvidence, LeadRecord, ScoreRecord
from kiosk.logs import event
from kiosk.realtime.transcripts import PENDING_MARK
from kiosk.tools.bounds import Money, Price, ToolArgs
from kiosk.tools.consent import UNVERIFIED, VERIFIED, consent_turn, first_assistant_line, missing_elements
from kiosk.tools.lending import LendingConfig
from kiosk.tools.registry import Tool, ToolContext
from kiosk.tools.scoring import explain, facts_from, score

ProductType = Literal["dscr", "hard_money", "fix_flip", "portfolio"]
Timeline = Literal["under_30_days", "30_to_90_days", "over_90_days", "just_looking", "unknown"]
DETAIL_FIELDS = ("timeline", "occupancy", "purchasePrice", "afterRepairValue", "rehabBudget", "propertyCount",
                 "experience", "exitStrategy")

_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
log = logging.getLogger(__name__)


class LeadDraft(ToolArgs):
    """The visitor's details as the model heard them."""

    name: str = Field(min_length=1, max_length=200, description="Visitor's full name.")
    email: str = Field(max_length=254, description="E-mail address, as read back and confirmed.")
    phone: str = Field(max_length=40, description="Phone number, as read back and confirmed.")
    productType: ProductType = Field(description="Loan product of interest.")
    # Strict: "yes", 1 or "true" from a confused model are not consent; only JSON true is.
    consentGiven: StrictBool = Field(description="True only after the visitor said yes to the consent disclosure.")
    # Optional deal facts the score uses (extra optional fields keep the contract intact).
    timeline: Timeline | None = Field(None, description="When the visitor wants to close, if they said.")
    occupancy: Literal["investment", "owner_occupied"] | None = Field(
        None, description="investment unless the visitor or family will live in the property."
    )
    purchasePrice: Price | None = Field(None, description="Purchase price, if no analyzeDeal was run.")
    afterRepairValue: Price | None = Field(None, description="Flips: value after renovation.")
    rehabBudget: Money | None = Field(None, description="Flips: renovation budget in dollars.")
    propertyCount: int | None = Field(None, ge=1, le=10000, description="Portfolio: number of properties.")
    experience: Literal["none", "one_to_two", "three_plus"] | None = Field(
        None, description="Hard money and flips: projects like this the investor has completed."
    )
    exitStrategy: Literal["sale", "refinance"] | None = Field(
        None, description="Hard money and flips: how the loan is repaid (sell, or refinance into a rental loan)."
    )


class SaveLeadArgs(ToolArgs):
    """Arguments of saveLead (the model's contract)."""

    leadDraft: LeadDraft


NUMBER_SLOT = "[their number, digit by digit]"


def disclosure_text(branch: BranchSettings, phone: str = NUMBER_SLOT) -> str:
    """The consent disclosure the assistant reads before saving a lead; ``phone`` is the number
    it covers (the script in the instructions has a slot the assistant fills in aloud)."""
    return (
        f"{branch.lender_name} (NMLS {branch.nmls_id}) may call or text you at {phone}, "
        f"including by automated or AI voice, about your inquiry. Consent is not a condition of any "
        f"loan, and you can opt out any time by saying or replying stop."
    )


def disclosure_version(text: str) -> str:
    """A short content hash identifying the exact disclosure wording."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def normalize_email(raw: str) -> str:
    """Trim, lower-case the domain; ToolError when it is not an address."""
    email = raw.strip().replace(" at ", "@").replace(" dot ", ".").replace(" ", "")
    if not _EMAIL.match(email):
        raise ToolError(
            f"{raw!r} is not a valid e-mail address",
            "read the e-mail back to the visitor letter by letter and correct it",
        )
    local, domain = email.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def normalize_phone(raw: str, region: str) -> str:
    """E.164 (+15555550123); ToolError when it is not a valid number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ToolError(
            f"{raw!r} is not a valid phone number",
            "read the number back digit by digit, with the area code, and correct it",
        )
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def consent_evidence(ctx: ToolContext, phone: str) -> ConsentEvidence:
    """The evidence of this visit's consent: the script, what the assistant actually said, the
    visitor's words by item id, and whether the spoken turn held every required element."""
    lines = ctx.lines_with_ids()
    said, visitor = consent_turn(lines, ctx.branch.lender_name)
    script = disclosure_text(ctx.branch, phone)
    missing = ["the consent turn (no assistant line asking for consent)"] if said is None else missing_elements(
        said, ctx.branch.lender_name, phone
    )
    return ConsentEvidence(
        disclosure_text=script,
        disclosure_version=disclosure_version(disclosure_text(ctx.branch)),
        channel="kiosk_voice",
        visitor_words="\n".join(i["words"] for i in visitor),
        phone=phone,
        assistant_words=said,
        greeting_words=first_assistant_line(lines),
        visitor_items=visitor,
        status=UNVERIFIED if missing else VERIFIED,
        missing=missing,
    )


def officer_email(composer: Composer, lead: LeadRecord, score: ScoreRecord) -> Email | None:
    """The loan officer's e-mail about a lead, or None (not qualified, no officer address, or a
    broken template: the lead matters more than the e-mail, so that is logged, never raised)."""
    try:
        return composer.officer(lead, score)
    except MailError as exc:
        log.error(
            "loan-officer e-mail not queued: %s", exc,
            extra=event("email_error", session=lead.session_id, lead_id=lead.id, kind=OFFICER_KIND),
        )  # fmt: skip
        return None


def save_lead(args: SaveLeadArgs, ctx: ToolContext, cfg: LendingConfig, composer: Composer) -> dict[str, Any]:
    """The tool. Refuses without consent; stores lead + consent + score + outbox rows (the CRM
    upload and, for a qualified lead, the loan officer's e-mail) in one transaction."""
    d = args.leadDraft
    if d.consentGiven is not True:
        raise ToolError(
            "not saved: the visitor has not given consent",
            "read the consent disclosure, ask the visitor for a clear yes, then call saveLead "
            "with consentGiven true; if they decline, do not save",
        )
    if ctx.closed:
        raise ToolError("not saved: the visit has ended", "do not retry")
    name = d.name.strip()
    if not name:
        raise ToolError("not saved: the name is empty", "ask the visitor for their name")
    email = normalize_email(d.email)
    phone = normalize_phone(d.phone, ctx.phone_region)
    details = {k: v for k, v in d.model_dump(include=set(DETAIL_FIELDS)).items() if v is not None}
    # Scoring in code right here makes "scoreLead follows saveLead" deterministic, and the
    # score lands in the same transaction as the lead.
    facts = facts_from(d.productType, details, ctx.latest_analysis, contact_fields=3, phone_consent=True)
    scored = score(facts, cfg.rubric)
    evidence = consent_evidence(ctx, phone)
    record = LeadRecord(
        name=name,
        email=email,
        phone=phone,
        product_type=d.productType,
        session_id=ctx.visit_id,
        kiosk_id=ctx.kiosk_id,
        analysis=ctx.latest_analysis,
        details=details or None,
    )
    officer = officer_email(composer, record, scored.record)
    lead_id = ctx.store.save_lead(
        record,
        evidence,
        scored.record,
        # The officer's e-mail commits with the lead or not at all: no lead without its
        # e-mail, no e-mail about a lead that was never stored.
        outbox=[] if officer is None else [(OFFICER_KIND, officer.to_payload())],
    )
    ctx.lead_ids.add(lead_id)
    # Visitor words still untranscribed are filled in when they land (the visit calls settle_late_words).
    ctx.awaiting |= {i["item"]: lead_id for i in evidence.visitor_items if i["words"] == PENDING_MARK}
    if evidence.status != VERIFIED:
        log.warning(
            "consent unverified: the spoken disclosure missed %s", ", ".join(evidence.missing),
            extra=event("consent_unverified", session=ctx.visit_id, lead_id=lead_id, missing=len(evidence.missing)),
        )  # fmt: skip
    log.info(
        "lead saved",
        extra={"kiosk": {"event": "lead_saved", "session": ctx.visit_id, "lead_id": lead_id, "product": d.productType,
                         "score": scored.record.total, "disposition": scored.record.disposition,
                         "officer_email": officer is not None}},
    )
    return {
        "leadId": lead_id,
        "saved": True,
        "email": email,
        "phone": phone,
        "attachedAnalysis": ctx.latest_analysis is not None,
        "consentVerified": evidence.status == VERIFIED,
        "followUp": explain(lead_id, scored, cfg, d.productType, facts.dscr),
    }


def make_tool(cfg: LendingConfig, composer: Composer) -> Tool:
    """The saveLead tool, scoring with the configured rubric and e-mailing the loan officer through ``composer``."""

    return Tool(
        name="saveLead",
        description=(
            "Save the visitor as a lead. Only after reading the consent disclosure and hearing a clear "
            "yes; e-mail and phone read back and confirmed first. Returns the lead id and its score."
        ),
        args=SaveLeadArgs,
        func=lambda args, ctx: save_lead(args, ctx, cfg, composer),
        quotes_visitor=True,
    )
