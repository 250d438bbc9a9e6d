"""The tools, built from settings: the one place that knows which tool needs what."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from kiosk.config import Settings
from kiosk.leads.mail import Composer
from kiosk.leads.store import Store
from kiosk.logs import event
from kiosk.tools import booking, consent, deals, flips, knowledge, leads, scoring, websearch
from kiosk.tools.lending import load_lending
from kiosk.tools.registry import Tool, ToolRegistry, ToolSite

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
    """The tools over the configured files. ConfigError when lending.toml is invalid; e-mail
    template problems are logged.

    Settings are required: the files they name are the only ones read (an installed kiosk has no checkout).
    """
    s = settings
    cfg = load_lending(s.tools.lending_file)
    composer = Composer(s.notify, s.branch)
    # A broken template must not keep the kiosk from taking leads: `kiosk config check`
    # refuses it, the running kiosk says so loudly and stores leads without that e-mail.
    for problem in composer.problems():
        log.error("%s", problem, extra=event("email_template_error"))
    t = s.tools
    client = websearch.PerplexityClient(
        api_key=s.secrets.perplexity_api_key,
        base_url=t.search_base_url,
        model=t.search_model,
        timeout_s=t.search_timeout_s,
        max_chars=t.search_max_chars,
    )
    return [
        knowledge.make_tool(open_knowledge(s)),
        deals.TOOL,
        flips.TOOL,
        leads.make_tool(cfg, composer),
        scoring.make_tool(cfg),
        booking.make_tool(cfg, composer),
        consent.TOOL,
        websearch.make_tool(client),
    ]


def build_registry(settings: Settings) -> ToolRegistry:
    """The registry of the tools with the configured time limit."""
    t = settings.tools
    return ToolRegistry(build_tools(settings), timeout_s=t.timeout_s, evidence_wait_s=t.evidence_wait_s)


def tool_site(settings: Settings, store: Store) -> ToolSite:
    """What every visit's tools share, from settings: the store, the kiosk and branch."""
    return ToolSite(
        store=store,
        kiosk_id=settings.kiosk_id,
        branch=settings.branch,
        phone_region=settings.tools.default_phone_region,
    )
