"""Consent evidence of what was said, the check of the spoken disclosure, and withdrawConsent.

Evidence is built from the assistant's own transcript, not from the script it was given:
the consent turn (the latest assistant line that asks for consent), the greeting (the AI
disclosure), and the visitor's words by item id. The spoken consent turn is checked for
every element the TCPA disclosure needs; a lead whose turn misses one is still saved (the
visitor asked to be contacted) but marked "unverified", and the CRM is told that no
automated call or text may be made on it.

Revocation "by any reasonable means" (FCC, April 2025): ``withdrawConsent`` marks this
visit's lead revoked, cancels its queued e-mails and queues a revocation notice to the
CRM through the outbox (``kiosk/schemas/consent-revocation.schema.json``, written by
:mod:`kiosk.leads.optout`, which the e-mail unsubscribe shares).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import phonenumbers
from pydantic import Field

from kiosk.config import Settings
from kiosk.errors import ToolError
from kiosk.leads.optout import revocation_document
from kiosk.leads.outbox import MAIL_KINDS, REVOCATION_KIND
from kiosk.logs import event
from kiosk.tools.bounds import ToolArgs
from kiosk.tools.registry import Tool, ToolContext

log = logging.getLogger(__name__)

VERIFIED, UNVERIFIED, REVOKED = "verified", "unverified", "revoked"
WORDS_KEPT = 4  # visitor utterances kept as evidence around the consent
_DIGITS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
           "six": "6", "seven": "7", "eight": "8", "nine": "9"}  # fmt: skip
_LEGAL_SUFFIX = re.compile(r"[,.]?\s+(llc|l\.l\.c\.|inc\.?|corp\.?|co\.?|ltd\.?|lp|n\.a\.)$", re.IGNORECASE)
# The required elements and what in the spoken words shows each (DOMAIN.md, saveLead: consent).
ELEMENTS = {
    "automated or AI voice": re.compile(r"\b(automated|artificial|ai|a\.i\.)\b", re.IGNORECASE),
    "consent is not a condition of any loan": re.compile(r"\bnot\s+(a\s+|any\s+)?condition\b", re.IGNORECASE),
    "how to opt out": re.compile(r"\b(opt[\s-]?out|stop|unsubscribe|withdraw|revoke)\b", re.IGNORECASE),
}


def spoken_digits(text: str) -> str:
    """The digits in ``text``, number words included ("four one five" -> "415"), in order."""
    out = []
    for token in re.findall(r"[a-z]+|\d", text.lower()):
        out.append(token if token.isdigit() else _DIGITS.get(token, ""))
    return "".join(out)


def core_name(lender_name: str) -> str:
    """The lender's name without its legal suffix ("Acme Capital LLC" -> "acme capital")."""
    return _LEGAL_SUFFIX.sub("", lender_name.strip()).lower()


def missing_elements(said: str, lender_name: str, phone_e164: str) -> list[str]:
    """The required disclosure elements ``said`` lacks (empty: the spoken consent is complete)."""
    missing = []
    if core_name(lender_name) not in " ".join(said.lower().split()):
        missing.append(f"the lender's name ({lender_name})")
    try:
        national = str(phonenumbers.parse(phone_e164).national_number)
    except phonenumbers.NumberParseException:
        national = re.sub(r"\D", "", phone_e164)
    if national not in spoken_digits(said):
        missing.append(f"the phone number covered ({phone_e164})")
    missing += [name for name, pattern in ELEMENTS.items() if not pattern.search(said)]
    return missing


def consent_turn(lines: list[tuple[str, str, str]], lender_name: str) -> tuple[str | None, list[dict[str, str]]]:
    """(the assistant's consent turn as said, the visitor's items around the yes) from ``lines``.

    The consent turn is the latest assistant line that asks for consent (names the lender,
    or speaks of consent or agreeing); the visitor's words are those from the line before it
    to the end, at most :data:`WORDS_KEPT`.
    """
    asks = re.compile(rf"consent|agree|{re.escape(core_name(lender_name))}", re.IGNORECASE)
    at = next((n for n in range(len(lines) - 1, -1, -1) if lines[n][1] == "assistant" and asks.search(lines[n][2])),
              None)  # fmt: skip
    # Only the answer proves consent: the line before (name, e-mail) is personal data that the
    # 4-year evidence must not keep after the lead's own retention purges it.
    start = 0 if at is None else at + 1
    visitor = [{"item": i, "words": t} for i, role, t in lines[start:] if role == "visitor"][-WORDS_KEPT:]
    return (None if at is None else lines[at][2]), visitor


def first_assistant_line(lines: list[tuple[str, str, str]]) -> str | None:
    """What the assistant said first in the visit (the greeting with its AI disclosure)."""
    return next((t for _, role, t in lines if role == "assistant"), None)


GREETING = (
    "Greet the visitor: first say, word for word: \"{disclosure}\" Then, in one short sentence, ask how you can "
    "help with investment property financing."
)


def greeting(settings: Settings) -> str:
    """The greeting request: the configured AI disclosure said first (several states require it
    up front); the assistant's transcript of it is stored with any consent of the visit."""
    disclosure = settings.session.ai_disclosure.replace("{lender_name}", settings.branch.lender_name)
    return GREETING.format(disclosure=disclosure)


class WithdrawConsentArgs(ToolArgs):
    """Arguments of withdrawConsent (the model's contract)."""

    leadId: str | None = Field(None, max_length=64, description="The leadId saveLead returned; omit for all of them.")
    phone: str | None = Field(
        None, max_length=40, description="Only when nothing was saved in this conversation: the number to stop."
    )
    deleteDetails: bool = Field(False, description="True when the visitor also asked to delete their details.")


def revocation_notice(
    ctx: ToolContext, lead_id: str | None, phone: str | None, words: str, erase: bool
) -> tuple[str, dict[str, Any]]:
    """The outbox row (ref, payload) telling the CRM a consent was revoked."""
    doc = revocation_document(kiosk_id=ctx.kiosk_id, session_id=ctx.visit_id, lead_id=lead_id, phone=phone,
                              words=words, erase=erase)  # fmt: skip
    return doc["id"], doc


def withdraw_consent(args: WithdrawConsentArgs, ctx: ToolContext) -> dict[str, Any]:
    """The tool: revoke this visit's lead(s), or a number given here when nothing was saved."""
    from kiosk.tools.leads import normalize_phone  # leads imports this module

    words = "\n".join(t for role, t in ctx.transcript if role == "visitor")
    words = words.splitlines()[-1] if words else ""
    wanted = args.leadId.strip() if args.leadId else None
    if wanted and wanted not in ctx.lead_ids:
        raise ToolError("unknown lead", "omit leadId to withdraw what was saved in this conversation")
    ids = sorted(i for i in ctx.lead_ids if wanted in (None, i))
    if ids:
        cancelled = 0
        for lead_id in ids:
            lead = ctx.store.lead(lead_id)
            if lead is None or lead["session_id"] != ctx.visit_id:
                continue
            ref, payload = revocation_notice(ctx, lead_id, None, words, args.deleteDetails)
            cancelled += ctx.store.revoke_consent(
                lead_id, words, MAIL_KINDS, (REVOCATION_KIND, payload), erase=args.deleteDetails
            )
        log.info("consent withdrawn", extra=event("consent_withdrawn", session=ctx.visit_id, leads=len(ids),
                                                  emails_cancelled=cancelled))  # fmt: skip
        return {"withdrawn": True, "leads": len(ids), "emailsCancelled": cancelled,
                "say": "Confirm that nobody will call, text or e-mail them about this, and that the lender is told."}
    if args.phone:
        phone = normalize_phone(args.phone, ctx.phone_region)
        ref, payload = revocation_notice(ctx, None, phone, words, args.deleteDetails)
        with ctx.store.transaction():
            ctx.store.enqueue(REVOCATION_KIND, ref, payload)
        log.info("consent withdrawn by number", extra=event("consent_withdrawn", session=ctx.visit_id, leads=0))
        return {"withdrawn": True, "leads": 0, "emailsCancelled": 0,
                "say": "Confirm that the lender is told to stop calling, texting and e-mailing that number."}
    return {"withdrawn": False, "say": "Nothing was saved in this conversation. Ask for the phone number they want "
            "the lender to stop contacting, read it back, and call withdrawConsent again with it."}


TOOL = Tool(
    name="withdrawConsent",
    description=(
        "The visitor says stop contacting me, unsubscribe, or delete my details: withdraw their consent. "
        "Covers the lead saved in this conversation; if nothing was saved, pass the phone number to stop."
    ),
    args=WithdrawConsentArgs,
    func=withdraw_consent,
)
