"""perplexitySearch: a short, sourced web answer from Perplexity's chat-completions API.

The sync's HTTPS client (:class:`kiosk.leads.http.HttpTransport`) in the tool's worker
thread, with its own overall time limit below the registry's. The answer is trimmed for speech: markdown and citation
markers removed, cut at a sentence end within the configured length, with up to three
sources. Without an API key the tool says "web search is not configured". The query is
never logged (it may hold personal details).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from kiosk.errors import ToolError
from kiosk.leads.http import HttpTransport
from kiosk.tools.registry import Tool, ToolContext

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You answer questions for a real-estate investor at a lender's kiosk. Reply in two or three short, "
    "plain sentences suitable to be read aloud, no lists, no markdown. Never quote a specific lender's rates."
)
MAX_SOURCES = 3
MAX_REPLY_BYTES = 2_000_000
FIX = "answer without it, or offer to have a loan officer follow up"
_MARKERS = re.compile(r"\[\d+(?:[,\s]*\d+)*\]")
_MARKDOWN = re.compile(r"(\*\*|__|`|^#+\s*|^\s*[-*]\s+)", re.MULTILINE)
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


@dataclass(frozen=True)
class PerplexityClient:
    """Perplexity chat completions; ``api_key`` None means not configured."""

    api_key: SecretStr | None
    base_url: str = "https://api.perplexity.ai"
    model: str = "sonar"
    timeout_s: float = 6.0
    max_chars: int = 450

    def ask(self, query: str, visit_id: str | None = None) -> dict[str, Any]:
        """POST one question; ToolError with a fix for every failure (logged with ``visit_id``)."""
        if self.api_key is None:
            raise ToolError("web search is not configured", "answer from the knowledge base or offer a loan officer")
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": query}],
        }
        headers = {
            "Authorization": f"Bearer {self.api_key.get_secret_value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        failed = {"kiosk": {"event": "websearch_error", "session": visit_id}}
        try:
            # timeout_s bounds the whole request (connect to last byte), not each socket read:
            # a service dripping its answer cannot keep the tool's worker thread for ever.
            transport = HttpTransport(self.base_url.rstrip("/") + "/chat/completions", self.timeout_s,
                                      max_reply_bytes=MAX_REPLY_BYTES)  # fmt: skip
            reply = transport.post(json.dumps(body).encode(), headers)
        except TimeoutError:
            raise ToolError("web search took too long", FIX) from None
        except (OSError, ValueError) as exc:
            log.warning("web search failed: %s", type(exc).__name__, extra=failed)
            raise ToolError("web search is unavailable right now", FIX) from None
        if not 200 <= reply.status < 300:
            log.warning("web search failed: HTTP %d", reply.status, extra=failed)
            raise ToolError(f"web search is unavailable right now (HTTP {reply.status})", FIX)
        try:
            data = json.loads(reply.body)
        except ValueError:
            raise ToolError("web search gave no answer", FIX) from None
        return self._result(data)

    def _result(self, data: Any) -> dict[str, Any]:
        try:
            content = str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise ToolError("web search gave no answer", FIX) from None
        return {
            "answer": trim_for_speech(content, self.max_chars),
            "sources": sources(data),
            "note": "From the web, not from the lender: say so, and keep it general.",
        }


def trim_for_speech(text: str, max_chars: int) -> str:
    """Plain text without markdown or [1] markers, cut at a sentence end within ``max_chars``."""
    text = _MARKERS.sub("", _LINK.sub(r"\1", text))
    text = " ".join(_MARKDOWN.sub("", text).split())
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    if end >= max_chars // 3:
        return cut[: end + 1]
    return cut.rsplit(" ", 1)[0].rstrip(",;:") + "…"


def sources(data: dict[str, Any]) -> list[dict[str, str]]:
    """Up to three sources: ``search_results`` (title + url) or, failing that, ``citations`` (urls)."""
    out: list[dict[str, str]] = []
    results = data.get("search_results")
    if isinstance(results, list):
        for r in results:
            if isinstance(r, dict) and isinstance(r.get("url"), str):
                out.append({"title": str(r.get("title") or r["url"]), "url": r["url"]})
    if not out and isinstance(data.get("citations"), list):
        out = [{"title": c, "url": c} for c in data["citations"] if isinstance(c, str)]
    return out[:MAX_SOURCES]


class PerplexitySearchArgs(BaseModel):
    """Arguments of perplexitySearch (the model's contract)."""

    model_config = ConfigDict(extra="ignore")

    query: str = Field(min_length=1, max_length=500, description="A general question for the web, no personal details.")


def make_tool(client: PerplexityClient) -> Tool:
    """The perplexitySearch tool over one client."""

    def search(args: PerplexitySearchArgs, ctx: ToolContext) -> dict[str, Any]:
        if not args.query.strip():
            raise ToolError("the query is empty", "ask the question in words")
        return client.ask(args.query.strip(), ctx.visit_id)

    return Tool(
        name="perplexitySearch",
        description=(
            "Search the web for general, current real-estate information the knowledge base lacks (market "
            "news, local rules). Not for this lender's own terms. Say the answer comes from the web."
        ),
        args=PerplexitySearchArgs,
        func=search,
    )
