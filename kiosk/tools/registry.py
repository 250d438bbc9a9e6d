"""Tool schemas and dispatch: every failure becomes an output the model can act on.

A tool is a pydantic argument model plus a function. The JSON Schema the model sees is
generated from the argument model (inlined, without pydantic's titles), so the schema and
the validation can never disagree. ``ToolRegistry.call`` never raises and never hangs:
bad JSON, a schema violation, a time-out or an exception all come back as
``{"error": "...", "fix": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from kiosk.config import BranchSettings
from kiosk.errors import StoreError, StoreFull, ToolError
from kiosk.leads.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolSite:
    """What the tools of every visit share: the store and who this kiosk speaks for."""

    store: Store
    kiosk_id: str
    branch: BranchSettings
    phone_region: str = "US"

    def visit(self, visit_id: str) -> ToolContext:
        """A fresh, empty scope for a visit that starts now."""
        return ToolContext(self, visit_id)


@dataclass(eq=False)
class ToolContext:
    """One visit's tool scope: the shared site plus what this visit said, computed and saved.

    A new one is made when a visit starts and handed to that visit's tools only, so work
    still finishing for the last visitor (a save in its worker thread) can only ever touch
    the last visitor's scope, never the next one's.
    """

    site: ToolSite
    visit_id: str
    transcript: list[tuple[str, str]] = field(default_factory=list)
    items: list[tuple[str, str, str]] = field(default_factory=list)  # (item id, role, text), when known
    latest_analysis: dict[str, Any] | None = None
    lead_ids: set[str] = field(default_factory=set)
    awaiting: dict[str, str] = field(default_factory=dict)  # visitor item id -> lead whose evidence quotes it
    closed: bool = False

    def lines_with_ids(self) -> list[tuple[str, str, str]]:
        """The conversation as ``(item id, role, text)``; numbered lines when no ids are known."""
        if self.items:
            return list(self.items)
        return [(f"line-{n}", role, text) for n, (role, text) in enumerate(self.transcript, start=1)]

    def settle_late_words(self, pending_mark: str) -> int:
        """Write visitor words that landed after a save into that lead's evidence; how many."""
        if not self.awaiting:
            return 0
        done = {i: t for i, role, t in self.items if role == "visitor" and t != pending_mark and i in self.awaiting}
        for item_id, text in done.items():
            self.store.fill_visitor_words(self.awaiting.pop(item_id), item_id, text)
        return len(done)

    @property
    def store(self) -> Store:
        """The kiosk's database."""
        return self.site.store

    @property
    def kiosk_id(self) -> str:
        """This kiosk's id (leads, consent evidence)."""
        return self.site.kiosk_id

    @property
    def branch(self) -> BranchSettings:
        """Who the kiosk speaks for."""
        return self.site.branch

    @property
    def phone_region(self) -> str:
        """Region for phone numbers spoken without a country code."""
        return self.site.phone_region

    def close(self) -> None:
        """The visit is over (or the visitor asked to be forgotten): drop what it holds."""
        self.closed = True
        self.transcript = []
        self.items = []
        self.latest_analysis = None
        self.lead_ids = set()
        self.awaiting = {}


ToolFunc = Callable[[Any, ToolContext], dict[str, Any] | Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Tool:
    """One tool: its contract name, a description for the model, its argument model."""

    name: str
    description: str
    args: type[BaseModel]
    func: ToolFunc
    blocking: bool = True  # synchronous code (SQLite, maths) runs in a worker thread
    quotes_visitor: bool = False  # stores the visitor's own words (consent evidence): wait for their transcripts

    def schema(self) -> dict[str, Any]:
        """The ``tools`` entry of a session.update."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": clean_schema(self.args.model_json_schema(by_alias=True)),
        }


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline ``$ref``s and drop pydantic's ``title`` keys: the shape models handle best."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].split("/")[-1]])
            optional = _optional_type(node)
            if optional is not None:
                return walk(optional)
            return {k: walk(v) for k, v in node.items() if k not in ("title", "$defs")}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    return out


def _optional_type(node: dict[str, Any]) -> dict[str, Any] | None:
    """``X | None = None`` as plain ``X`` (omitting the field means None): simpler for the model."""
    options = node.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or "default" not in node or node["default"] is not None:
        return None
    kept = [o for o in options if o != {"type": "null"}]
    if len(kept) != 1:
        return None
    return {**{k: v for k, v in node.items() if k not in ("anyOf", "default")}, **kept[0]}


def error_output(error: str, fix: str) -> str:
    """The JSON a tool returns on failure."""
    return json.dumps({"error": error, "fix": fix})


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


class ToolRegistry:
    """The tools by name, with a per-call time limit."""

    def __init__(self, tools: list[Tool], timeout_s: float = 8.0, evidence_wait_s: float = 3.0) -> None:
        self.tools = {t.name: t for t in tools}
        self.timeout_s = timeout_s
        self.evidence_wait_s = evidence_wait_s  # longest wait for visitor transcripts before such a tool runs

    def quotes_visitor(self, names: list[str]) -> bool:
        """True when one of these tools stores the visitor's words (it must see all of them)."""
        return any(t.quotes_visitor for n in names if (t := self.tools.get(n)) is not None)

    def schemas(self) -> list[dict[str, Any]]:
        """The ``tools`` array for session.update."""
        return [t.schema() for t in self.tools.values()]

    async def call(self, name: str, arguments: str, ctx: ToolContext) -> str:
        """Run one call; always returns the JSON string to send as the output."""
        tool = self.tools.get(name)
        if tool is None:
            return error_output(f"unknown tool {name!r}", f"use one of: {', '.join(self.tools)}")
        try:
            raw = json.loads(arguments or "{}")
        except (ValueError, TypeError, RecursionError) as exc:
            return error_output(f"arguments are not valid JSON ({exc})", "send the arguments as one JSON object")
        if not isinstance(raw, dict):
            return error_output("arguments must be a JSON object", "send the arguments as one JSON object")
        try:
            args = tool.args.model_validate(raw)
        except ValidationError as exc:
            return error_output(
                f"invalid arguments: {_describe(exc)}",
                "correct those fields (see the tool's parameters) and call again",
            )
        failed = {"kiosk": {"event": "tool_error", "tool": name, "session": ctx.visit_id}}
        try:
            async with asyncio.timeout(self.timeout_s):
                if tool.blocking:
                    result = await asyncio.to_thread(tool.func, args, ctx)
                else:
                    result = tool.func(args, ctx)
                if isinstance(result, Awaitable):
                    result = await result
        except TimeoutError:
            log.warning(
                "tool %s timed out after %.1f s",
                name,
                self.timeout_s,
                extra={"kiosk": {"event": "tool_timeout", "tool": name, "session": ctx.visit_id}},
            )
            return error_output(f"{name} took too long", "tell the visitor it is unavailable right now")
        except ToolError as exc:
            return error_output(str(exc), exc.fix or "ask the visitor and try again")
        except StoreFull as exc:
            # One line, no traceback: the disk filled up; nothing was written, and the same call
            # succeeds once space returns.
            log.error("tool %s: storage failed: %s", name, exc, extra=failed)
            return error_output("could not save just now", "try again in a moment")
        except StoreError as exc:
            log.error("tool %s: storage failed: %s", name, exc, extra=failed)
            return error_output(
                "the kiosk could not store that right now", "apologise and offer to have someone follow up another way"
            )
        except Exception:
            log.exception("tool %s failed", name, extra=failed)
            return error_output(f"{name} failed unexpectedly", "do not retry; continue without it")
        try:
            return json.dumps(result, allow_nan=False)
        except (TypeError, ValueError):
            log.exception("tool %s returned no JSON", name, extra=failed)
            return error_output(f"{name} failed unexpectedly", "do not retry; continue without it")
