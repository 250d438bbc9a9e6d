"""The six tools, built from settings: the one place that knows which tool needs what."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from kiosk.config import Settings
from kiosk.tools import booking, deals, knowledge, leads, scoring, websearch
from kiosk.tools.lending import load_lending
from kiosk.tools.registry import Tool, ToolRegistry

log = logging.getLogger(__name__)

INDEX_NAME = "knowledge-index.sqlite"


def index_path(settings: Settings) -> Path:
    """Where the knowledge-base index lives: next to the database."""
    return settings.store.path.parent / INDEX_NAME


def open_knowledge(settings: Settings, *, persist: bool = True, force: bool = False) -> knowledge.KnowledgeBase:
    """The knowledge index, rebuilt when the markdown changed; in memory when the file cannot be written."""
    source = settings.tools.knowledge_dir
    if not persist:
        return knowledge.KnowledgeBase.open_or_build(source)
    try:
        return knowledge.KnowledgeBase.open_or_build(source, index_path(settings), force=force)
    except (OSError, sqlite3.Error) as exc:
        log.warning("knowledge index not writable (%s); keeping it in memory", exc)
        return knowledge.KnowledgeBase.open_or_build(source)


def build_tools(settings: Settings) -> list[Tool]:
    """The six tools over the configured knowledge base and lending file; ConfigError when lending.toml is invalid.

    Settings are required: the files they name are the only ones read (an installed kiosk has no checkout).
    """
    cfg = load_lending(settings.tools.lending_file)
    t = settings.tools
    client = websearch.PerplexityClient(
        api_key=settings.secrets.perplexity_api_key,
        base_url=t.search_base_url,
        model=t.search_model,
        timeout_s=t.search_timeout_s,
        max_chars=t.search_max_chars,
    )
    return [
        knowledge.make_tool(open_knowledge(settings)),
        deals.TOOL,
        leads.make_tool(cfg),
        scoring.make_tool(cfg),
        booking.make_tool(cfg),
        websearch.make_tool(client),
    ]


def build_registry(settings: Settings) -> ToolRegistry:
    """The registry of the six tools with the configured time limit."""
    return ToolRegistry(build_tools(settings), timeout_s=settings.tools.timeout_s)
