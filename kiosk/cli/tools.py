"""``kiosk tools schema|call`` and ``kiosk kb build|search``: the tools from a technician's shell."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from kiosk.cli import args as cli_args
from kiosk.config import Settings, load_settings
from kiosk.errors import StoreError, UsageError
from kiosk.leads.store import Store
from kiosk.tools import catalog
from kiosk.tools.knowledge import KnowledgeBase


def register(sub: Any) -> None:
    """Add the ``tools`` and ``kb`` sub-commands to the ``kiosk`` parser."""
    tools = sub.add_parser("tools", help="the assistant's tools")
    tsub = tools.add_subparsers(dest="tools_command", required=True)
    tsub.add_parser("schema", help="print the tools array the model sees")
    call = tsub.add_parser("call", help="run one tool against the configured store; print its output")
    call.add_argument("name", help="tool name, e.g. analyzeDeal")
    call.add_argument("--args", default="{}", help="arguments as one JSON object (default {})")
    call.add_argument(
        "--store", type=Path, default=None, help="act on this database (the kiosk's: store.path); default a scratch one"
    )
    call.add_argument(
        "--session", default=None, help="visit id to act in (its saved leads are in scope); default: new"
    )

    kb = sub.add_parser("kb", help="the knowledge base")
    ksub = kb.add_subparsers(dest="kb_command", required=True)
    ksub.add_parser("build", help="(re)build the search index from the markdown files")
    search = ksub.add_parser("search", help="search the knowledge base as the assistant would")
    search.add_argument("query")
    search.add_argument("--top-k", type=cli_args.count, default=3)
    search.add_argument("--json", action="store_true", help="print the results as JSON")
    for p in (tools, kb):
        p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run ``kiosk tools ...`` or ``kiosk kb ...``; returns the exit status."""
    settings = load_settings(args.config).settings
    try:
        if args.command == "kb":
            return _kb(args, settings)
        return _tools(args, settings)
    except (OSError, sqlite3.Error) as exc:  # the knowledge index or its directory
        raise StoreError(str(exc)) from None


def _tools(args: argparse.Namespace, settings: Settings) -> int:
    registry = catalog.build_registry(settings)
    if args.tools_command == "schema":
        print(json.dumps(registry.schemas(), indent=2))
        return 0
    if args.name not in registry.tools:
        raise UsageError(f"unknown tool {args.name!r}; tools: {', '.join(registry.tools)}")
    with contextlib.ExitStack() as stack:
        if args.store is None:
            # A scratch store: a technician trying saveLead must not create a real consented
            # lead that the CRM then receives, nor scheduleCall a real e-mail.
            path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kiosk-tools-"))) / "scratch.db"
            print(f"(scratch store; --store {settings.store.path} acts on the kiosk's own)", file=sys.stderr)
            store = Store(path)
        else:
            store = Store(args.store, create=False)
        stack.callback(store.close)
        ctx = catalog.tool_site(settings, store).visit(args.session or f"cli-{uuid.uuid4()}")
        if args.session:
            ctx.lead_ids = set(store.session_lead_ids(args.session))
        print(asyncio.run(registry.call(args.name, args.args, ctx)))
    return 0


def _kb(args: argparse.Namespace, settings: Settings) -> int:
    source = settings.tools.knowledge_dir
    if not source.is_dir():
        print(f"config: tools.knowledge_dir: {source} is not a directory", file=sys.stderr)
        return os.EX_CONFIG
    if args.kb_command == "build":
        path = catalog.index_path(settings)
        kb = KnowledgeBase.open_or_build(source, path, force=True)
        files = len(list(Path(source).glob("*.md")))
        print(f"indexed {len(kb)} chunks from {files} files into {path}")
        kb.close()
        return 0
    kb = catalog.open_knowledge(settings)
    hits = kb.search(args.query, args.top_k)
    kb.close()
    if args.json:
        print(json.dumps([h.__dict__ for h in hits], indent=2))
        return 0
    if not hits:
        print("no results")
    for n, h in enumerate(hits, 1):
        print(f"{n}. {h.title} — {h.doc_title} ({h.source}) score {h.score:.2f}")
        print(f"   {h.text[:160]}{'…' if len(h.text) > 160 else ''}")
    return 0
