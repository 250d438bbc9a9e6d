"""What the store keeps about a lead, as the tools hand it over: the lead, its score and its
consent evidence, with the id and time a lead has before it is stored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds (evidence timestamps, not durations)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_lead_id() -> str:
    """A fresh lead id (a random UUID: unique across kiosks, nothing to guess from it)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class LeadRecord:
    """What saveLead stores. It has its id and time before it is stored, so e-mails about it
    can be written first and committed in the same transaction as the lead."""

    name: str
    email: str
    phone: str
    product_type: str
    session_id: str
    kiosk_id: str
    analysis: dict[str, Any] | None
    details: dict[str, Any] | None = None  # optional deal facts the visitor gave (scoring inputs)
    id: str = field(default_factory=new_lead_id)
    created_at: str = field(default_factory=utc_now)


@dataclass(frozen=True)
class ScoreRecord:
    """An explainable score: points per factor, reason codes, the rubric version that produced it."""

    total: int
    disposition: str
    points: dict[str, int]
    reasons: list[str]
    rubric_version: str


@dataclass(frozen=True)
class ConsentEvidence:
    """Proof of the visitor's consent (TCPA): what was disclosed, what was actually said, and their words.

    ``disclosure_text`` is the script the assistant was given (its hash is the version);
    ``assistant_words`` is the assistant's own transcript of the consent turn and
    ``greeting_words`` of its greeting (the AI disclosure); ``visitor_items`` the visitor's
    words by item id. ``status`` is "verified" when the spoken words hold every required
    element, else "unverified" with ``missing`` naming what was not said.
    """

    disclosure_text: str
    disclosure_version: str
    channel: str
    visitor_words: str
    phone: str | None = None
    assistant_words: str | None = None
    greeting_words: str | None = None
    visitor_items: list[dict[str, str]] = field(default_factory=list)
    status: str = "unchecked"
    missing: list[str] = field(default_factory=list)
