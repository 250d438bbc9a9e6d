"""saveLead: a lead is stored only with the visitor's spoken consent, with proof of it.

The consent disclosure names the lender and the number, and says consent is not a
condition of any loan (TCPA). Its text and a hash of it (the version) are stored with
the lead, with the visitor's own transcribed words around the "yes", the UTC time, the
kiosk and the session. Contact details are validated and normalized (E.164 phones).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field

from kiosk.config import BranchSettings
from kiosk.errors import ToolError
from kiosk.store import ConsentEvidence, LeadRecord
from kiosk.tools.registry import Tool, ToolContext

ProductType = Literal["dscr", "hard_money", "fix_flip", "portfolio"]

_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
WORDS_KEPT = 4  # visitor utterances kept as evidence around the consent


class LeadDraft(BaseModel):
    """The visitor's details as the model heard them."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200, description="Visitor's full name.")
    email: str = Field(max_length=254, description="E-mail address, as read back and confirmed.")
    phone: str = Field(max_length=40, description="Phone number, as read back and confirmed.")
    productType: ProductType = Field(description="Loan product of interest.")
    consentGiven: bool = Field(description="True only after the visitor said yes to the consent disclosure.")


class SaveLeadArgs(BaseModel):
    """Arguments of saveLead (the model's contract)."""

    model_config = ConfigDict(extra="ignore")

    leadDraft: LeadDraft


def disclosure_text(branch: BranchSettings) -> str:
    """The consent disclosure the assistant reads before saving a lead."""
    return (
        f"{branch.lender_name} (NMLS {branch.nmls_id}) may call or text you at the number you gave, "
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


def save_lead(args: SaveLeadArgs, ctx: ToolContext) -> dict[str, Any]:
    """The tool. Refuses without consent; stores lead + consent + outbox atomically."""
    d = args.leadDraft
    if d.consentGiven is not True:
        raise ToolError(
            "not saved: the visitor has not given consent",
            "read the consent disclosure, ask the visitor for a clear yes, then call saveLead "
            "with consentGiven true; if they decline, do not save",
        )
    if not ctx.session_id:
        raise ToolError("not saved: no visitor session is active", "do not retry")
    email = normalize_email(d.email)
    phone = normalize_phone(d.phone, ctx.phone_region)
    text = disclosure_text(ctx.branch)
    words = [t for role, t in ctx.transcript if role == "visitor"][-WORDS_KEPT:]
    lead_id = ctx.store.save_lead(
        LeadRecord(
            name=d.name.strip(),
            email=email,
            phone=phone,
            product_type=d.productType,
            session_id=ctx.session_id,
            kiosk_id=ctx.kiosk_id,
            analysis=ctx.latest_analysis,
        ),
        ConsentEvidence(
            disclosure_text=text,
            disclosure_version=disclosure_version(text),
            channel="kiosk_voice",
            visitor_words="\n".join(words),
        ),
    )
    ctx.lead_ids.add(lead_id)
    return {
        "leadId": lead_id,
        "saved": True,
        "email": email,
        "phone": phone,
        "attachedAnalysis": ctx.latest_analysis is not None,
    }


TOOL = Tool(
    name="saveLead",
    description=(
        "Save the visitor as a lead. Only after reading the consent disclosure and hearing a clear "
        "yes; e-mail and phone read back and confirmed first."
    ),
    args=SaveLeadArgs,
    func=save_lead,
)
