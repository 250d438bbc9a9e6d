"""A visit's record, built from what happened in it (pure).

Every press that counts as a visit gets one record, also those that end before any
response (the kiosk was offline) and those refused at the press (the day's budget is
spent): start, end, duration, why it ended, the stages it reached, the tools it ran, the
knowledge sections the assistant was given, tokens and cost, and press-to-first-audio.

Stages come from events, never from the visitor's words: a visitor transcript line only
says that the visitor spoke; an assistant line is read for one thing, the consent
disclosure's fixed phrase (:data:`CONSENT_MARKER`), the assistant's own words; tools say
whether numbers were run, a lead saved, a call scheduled.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any


class Stage(enum.Enum):
    """How far a visit got, in funnel order (the furthest reached is the visit's stage)."""

    PRESSED = "pressed"  # every visit: the button was pressed
    GREETED = "greeted"  # the assistant's greeting was heard
    ASKED = "asked"  # the visitor said something
    RAN_NUMBERS = "ran_numbers"  # analyzeDeal ran
    CONSENT_OFFERED = "consent_offered"  # the assistant read the consent disclosure
    CONSENT_DECLINED = "consent_declined"  # the visitor answered it and no lead was saved
    LEAD_SAVED = "lead_saved"  # saveLead stored a lead
    CALL_SCHEDULED = "call_scheduled"  # scheduleCall gave the booking link


STAGES = tuple(Stage)
# The drop-off funnel's steps (a decline is a leak, not a step): a visit counts at every step
# up to its furthest stage.
FUNNEL = (
    Stage.PRESSED,
    Stage.GREETED,
    Stage.ASKED,
    Stage.RAN_NUMBERS,
    Stage.CONSENT_OFFERED,
    Stage.LEAD_SAVED,
    Stage.CALL_SCHEDULED,
)
# Every consent disclosure says this (TCPA): the script in config/instructions.md does.
CONSENT_MARKER = "consent is not a condition"
TOOL_STAGES = {"analyzeDeal": Stage.RAN_NUMBERS, "saveLead": Stage.LEAD_SAVED, "scheduleCall": Stage.CALL_SCHEDULED}
KNOWLEDGE_TOOL = "searchKnowledgeBase"


def tool_ok(output: str) -> bool:
    """A tool output that is not the registry's ``{"error": ...}``."""
    return not output.lstrip().startswith('{"error"')


def knowledge_titles(output: str) -> list[str]:
    """Section titles of a searchKnowledgeBase output (titles of our own documents only)."""
    try:
        results = json.loads(output).get("results", [])
    except (ValueError, AttributeError):
        return []
    return [str(r["title"]) for r in results if isinstance(r, dict) and r.get("title")]


@dataclass(frozen=True)
class VisitRecord:
    """One visit as stored (table ``visits``); no personal data."""

    id: str
    day: str  # the local day it started (budgets and reports count local days)
    started_at: str  # UTC ISO 8601
    ended_at: str
    duration_s: float
    end_reason: str
    stages: tuple[str, ...]
    tools: dict[str, int] = field(default_factory=dict)
    topics: tuple[str, ...] = ()
    consent_offers: int = 0
    consent_declines: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    first_audio_ms: float | None = None
    warm: bool | None = None

    @property
    def stage(self) -> str:
        """The furthest stage reached."""
        return max(self.stages, key=lambda s: STAGES.index(Stage(s)))

    def row(self) -> dict[str, Any]:
        """The database row."""
        return {
            "id": self.id,
            "day": self.day,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": round(self.duration_s, 3),
            "end_reason": self.end_reason,
            "stage": self.stage,
            "stages_json": json.dumps(list(self.stages)),
            "tools_json": json.dumps(self.tools, sort_keys=True),
            "topics_json": json.dumps(list(self.topics)),
            "consent_offers": self.consent_offers,
            "consent_declines": self.consent_declines,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "first_audio_ms": None if self.first_audio_ms is None else round(self.first_audio_ms, 1),
            "warm": None if self.warm is None else int(self.warm),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> VisitRecord:
        """Back from a database row."""
        return cls(
            id=row["id"],
            day=row["day"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            duration_s=float(row["duration_s"]),
            end_reason=row["end_reason"],
            stages=tuple(json.loads(row["stages_json"])),
            tools=dict(json.loads(row["tools_json"])),
            topics=tuple(json.loads(row["topics_json"])),
            consent_offers=int(row["consent_offers"]),
            consent_declines=int(row["consent_declines"]),
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
            cost_usd=float(row["cost_usd"]),
            first_audio_ms=row["first_audio_ms"],
            warm=None if row["warm"] is None else bool(row["warm"]),
        )


def refused(visit_id: str, day: str, at: str, reason: str) -> VisitRecord:
    """A press that started no visit: a visit of no length, ended for ``reason``."""
    return VisitRecord(visit_id, day, at, at, 0.0, reason, (Stage.PRESSED.value,))


class VisitTracker:
    """Follows one visit and makes its record at the end.

    Consent: after the assistant read the disclosure, the visitor's next utterance is their
    answer. When no lead is saved before the visitor speaks again, the disclosure is read
    again or the visit ends, that answer was a no (a decline). The assistant may speak in
    between ("saving that now"): only a save, or the lack of one, decides. A later yes
    still saves the lead: the visit counts one decline and reaches ``lead_saved``.
    """

    def __init__(self, visit_id: str, day: str, started_at: str) -> None:
        self.visit_id, self.day, self.started_at = visit_id, day, started_at
        self.reached: set[Stage] = {Stage.PRESSED}
        self.tools: dict[str, int] = {}
        self.topics: list[str] = []
        self.offers = 0
        self.declines = 0
        self.first_audio_ms: float | None = None
        self.warm: bool | None = None
        self._asked_consent = False  # the disclosure was read; no answer resolved yet
        self._answered = False  # ... and the visitor has answered it

    def first_audio(self, ms: float, warm: bool) -> None:
        """The assistant became audible for the first time in this visit."""
        if self.first_audio_ms is None:
            self.first_audio_ms, self.warm = ms, warm
        self.reached.add(Stage.GREETED)

    def transcript(self, role: str, text: str) -> None:
        """A finished transcript line; a visitor's ``text`` is never looked at."""
        if role != "assistant":
            self.reached.add(Stage.ASKED)
            if self._asked_consent and self._answered:
                self._decline()  # spoke again after answering, and nothing was saved
            elif self._asked_consent:
                self._answered = True
            return
        self.reached.add(Stage.GREETED)
        if CONSENT_MARKER in " ".join(text.lower().split()):
            if self._asked_consent and self._answered:
                self._decline()  # read again after an answer that saved nothing
            self.offers += 1
            self.reached.add(Stage.CONSENT_OFFERED)
            self._asked_consent, self._answered = True, False

    def tool(self, name: str, output: str) -> None:
        """A tool call finished with ``output`` (what the model got)."""
        self.tools[name] = self.tools.get(name, 0) + 1
        if not tool_ok(output):
            return
        stage = TOOL_STAGES.get(name)
        if stage is not None:
            self.reached.add(stage)
        if stage is Stage.LEAD_SAVED:
            self._asked_consent = self._answered = False
        if name == KNOWLEDGE_TOOL:
            self.topics += [t for t in knowledge_titles(output) if t not in self.topics]

    def _decline(self) -> None:
        self.declines += 1
        self.reached.add(Stage.CONSENT_DECLINED)
        self._asked_consent = self._answered = False

    def end(
        self,
        reason: str,
        ended_at: str,
        duration_s: float,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
    ) -> VisitRecord:
        """The visit is over: its record."""
        if self._asked_consent and self._answered:
            self._decline()
        return VisitRecord(
            id=self.visit_id,
            day=self.day,
            started_at=self.started_at,
            ended_at=ended_at,
            duration_s=max(0.0, duration_s),
            end_reason=reason,
            stages=tuple(s.value for s in STAGES if s in self.reached),
            tools=dict(self.tools),
            topics=tuple(self.topics),
            consent_offers=self.offers,
            consent_declines=self.declines,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd,
            first_audio_ms=self.first_audio_ms,
            warm=self.warm,
        )
