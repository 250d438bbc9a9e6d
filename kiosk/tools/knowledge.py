"""searchKnowledgeBase: SQLite FTS5 (bm25) over the markdown knowledge base.

Each markdown file is cut into chunks at its headings (``##`` and deeper); a chunk keeps
its section title and the file's ``#`` title as its source title, so an answer can say
where it came from. Section titles weigh most in the ranking, then the source title,
then the text.

On a large knowledge base, a word found in more than half the chunks is dropped from the
query when rarer words remain: FTS5's bm25 clamps the IDF of such a word to almost zero,
so it cannot change the ranking. When only such words remain, chunks carrying them in
their title are taken first, unranked among all matches: the title weighs most anyway.

bm25 costs about a microsecond for every chunk a query matches (it reads each one's
column sizes), so on a large knowledge base no query ranks more than about
``RANK_ROWS`` chunks, judged from each word's chunk count (counted once, cached): chunks
holding every word first (AND); then the rarest words alone, as many as stay within the
bound (their chunks outrank those of commoner words on IDF anyway); then any word (OR).
A try that would match more than the bound ranks only the chunks with its words in a
title (the section's or the document's: they weigh most), and what is still missing is
filled, unranked, from any chunk holding a word. On the bench's 10,000 chunks this took
the slowest query from 9 ms to 1.3 ms; the first hit is the same as with ranking every
match for 95 % of the visitor questions and 88 % of the one-word queries.

Visitor words never reach FTS5's query language: the query is cut into word tokens, each
one quoted, joined with OR and ranked by bm25, so quotes, ``*``, ``NEAR``, ``-`` or
``AND`` in what the visitor said are plain words, never syntax.

The index is derived data: built at daemon start (or by ``kiosk kb build``) into a file
next to the database, rebuilt only when the markdown changed (a content fingerprint), or
kept in memory. :meth:`KnowledgeBase.build` takes any chunks, so benchmarks can build a
large knowledge base programmatically.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kiosk.errors import ToolError
from kiosk.tools.registry import Tool, ToolContext

log = logging.getLogger(__name__)

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_WORD = re.compile(r"\w+")
MAX_TERMS = 16
LARGE_KB_CHUNKS = 1000  # below this, scoring every match is cheap: every query word is kept
DF_CACHE = 20_000  # words whose chunk counts are kept (a few MB at most)
RANK_ROWS = 1000  # on a large knowledge base, bm25 ranks at most about this many chunks per try
WEIGHTS = (6.0, 2.0, 1.0)  # bm25 column weights: section title, source title, text
STOPWORDS = frozenset(
    {
        "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "before",
        "being", "but", "by", "can", "could", "did", "do", "does", "doing", "for", "from", "had", "has", "have",
        "having", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me", "my", "no", "not", "of", "on",
        "or", "our", "out", "should", "so", "some", "than", "that", "the", "their", "them", "then", "there",
        "these", "they", "this", "those", "to", "too", "us", "very", "was", "we", "were", "what", "when", "where",
        "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours",
    }
)


@dataclass(frozen=True)
class Chunk:
    """One searchable section."""

    source: str  # file name
    doc_title: str  # the file's "#" title
    title: str  # the section's heading
    body: str


@dataclass(frozen=True)
class Hit:
    """One search result."""

    title: str
    doc_title: str
    source: str
    text: str
    score: float


def chunk_markdown(text: str, source: str) -> list[Chunk]:
    """Cut one markdown document at its headings; text before the first section is a chunk too."""
    doc_title = Path(source).stem.replace("-", " ").capitalize()
    sections: list[tuple[str, list[str]]] = []
    title, lines = "", list[str]()
    for line in text.splitlines():
        m = _HEADING.match(line)
        if m and len(m.group(1)) == 1 and not sections and not any(s.strip() for s in lines):
            doc_title = m.group(2) or doc_title
            continue
        if m:
            sections.append((title, lines))
            title, lines = m.group(2), []
            continue
        lines.append(line)
    sections.append((title, lines))
    chunks = []
    for heading, body_lines in sections:
        body = " ".join(" ".join(body_lines).split())
        if body:
            chunks.append(Chunk(source=source, doc_title=doc_title, title=heading or doc_title, body=body))
    return chunks


def load_chunks(directory: Path) -> list[Chunk]:
    """All chunks of the ``*.md`` files in a directory, in file-name order."""
    chunks: list[Chunk] = []
    for f in sorted(directory.glob("*.md")):
        chunks.extend(chunk_markdown(f.read_text(encoding="utf-8"), f.name))
    return chunks


def fingerprint(directory: Path) -> str:
    """A hash of the knowledge base's file names and contents (is the index stale?)."""
    h = hashlib.sha256()
    for f in sorted(directory.glob("*.md")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def query_terms(query: str) -> list[str]:
    """The words of free text worth searching for: stop words dropped unless nothing else is left."""
    words = [w for w in _WORD.findall(query.lower()) if w.strip("_")]
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))[:MAX_TERMS]


def match_expression(query: str) -> str:
    """An FTS5 MATCH expression from free text: quoted word tokens joined by OR ('' if no words)."""
    return _or(query_terms(query))


def _or(terms: list[str]) -> str:
    return " OR ".join(f'"{w}"' for w in terms)


def plan(terms: list[str], df: dict[str, int], chunks: int) -> list[str]:
    """The ranked MATCH tries for ``terms``, best first, each ranking about ``RANK_ROWS`` chunks at most.

    ``df`` is each word's chunk count (0 everywhere on a small knowledge base: every try
    is cheap there). Every word (AND), the rarest words within the bound (OR), any word
    (OR); a try over the bound is confined to the titles.
    """

    def bounded(expr: str, matches: float) -> str:
        return expr if matches <= RANK_ROWS else f"{{title doc_title}} : ({expr})"

    tries = []
    if len(terms) > 1:
        share = 1.0
        for t in terms:
            share *= df[t] / chunks if chunks else 0.0
        tries.append(bounded(_or(terms).replace(" OR ", " AND "), chunks * share))
    rarest: list[str] = []
    total = 0
    for t in sorted(terms, key=lambda t: df[t]):
        if total + df[t] > RANK_ROWS:
            break
        rarest.append(t)
        total += df[t]
    if rarest and len(rarest) < len(terms):
        tries.append(_or(rarest))
    tries.append(bounded(_or(terms), sum(df[t] for t in terms)))
    return tries


class KnowledgeBase:
    """A read-only FTS5 index; safe to search from worker threads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._chunks = int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
        self._df: dict[str, int] = {}  # chunks holding a word (the index is read-only: never stale)

    @classmethod
    def build(cls, chunks: Iterable[Chunk], path: Path | None = None, fingerprint: str = "") -> KnowledgeBase:
        """Index the chunks into ``path`` (replaced atomically) or, with no path, into memory."""
        target = ":memory:" if path is None else str(path.with_name(path.name + ".tmp"))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            Path(target).unlink(missing_ok=True)
        conn = sqlite3.connect(target, check_same_thread=False)
        with conn:
            conn.execute(
                "CREATE VIRTUAL TABLE chunks USING fts5("
                "title, doc_title, body, source UNINDEXED, tokenize='porter unicode61 remove_diacritics 2')"
            )
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.executemany(
                "INSERT INTO chunks (title, doc_title, body, source) VALUES (?, ?, ?, ?)",
                ((c.title, c.doc_title, c.body, c.source) for c in chunks),
            )
            conn.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
            conn.execute("INSERT INTO chunks(chunks) VALUES ('optimize')")
        if path is None:
            return cls(conn)
        conn.close()
        os.replace(target, path)
        return cls(sqlite3.connect(path, check_same_thread=False))

    @classmethod
    def open_or_build(cls, source_dir: Path, index_path: Path | None = None, force: bool = False) -> KnowledgeBase:
        """The index of ``source_dir``: reuse ``index_path`` when current, else (re)build it."""
        fp = fingerprint(source_dir)
        if index_path is not None and index_path.is_file() and not force:
            try:
                conn = sqlite3.connect(index_path, check_same_thread=False)
                row = conn.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
                if row is not None and row[0] == fp:
                    return cls(conn)
                conn.close()
            except sqlite3.Error as exc:
                log.warning("knowledge index %s unreadable (%s); rebuilding", index_path, exc)
        chunks = load_chunks(source_dir)
        kb = cls.build(chunks, index_path, fp)
        log.info(
            "knowledge base indexed: %d chunks",
            len(chunks),
            extra={"kiosk": {"event": "kb_built", "chunks": len(chunks)}},
        )
        return kb

    def __len__(self) -> int:
        return self._chunks

    def search(self, query: str, top_k: int = 3) -> list[Hit]:
        """The best ``top_k`` chunks for free text, best first; [] when no word of it is indexed.

        Chunks holding every word are tried first (an AND query ranks only their few rows,
        which keeps search fast on a large knowledge base); when fewer than ``top_k`` hold
        them all, any word counts (OR). On a large knowledge base, words in more than half
        the chunks are left out of both (see the module's docstring).
        """
        terms = query_terms(query)
        if not terms or top_k < 1:
            return []
        with self._lock:
            df = {t: self._doc_freq(t) for t in terms}
            kept = [t for t in terms if df[t] * 2 <= self._chunks]
            rows = self._best(kept, df, top_k) if kept else self._title_first(terms, top_k)
        return [Hit(title=r[1], doc_title=r[2], source=r[3], text=r[4], score=-float(r[5])) for r in rows]

    def _best(self, terms: list[str], df: dict[str, int], top_k: int) -> list[tuple[Any, ...]]:
        """The tries of :func:`plan` in turn until ``top_k`` rows, then any word, unranked."""
        rows: list[tuple[Any, ...]] = []
        for expr in plan(terms, df, self._chunks):
            seen = {r[0] for r in rows}
            rows += [r for r in self._ranked(expr, top_k) if r[0] not in seen][: top_k - len(rows)]
            if len(rows) >= top_k:
                return rows
        seen = {r[0] for r in rows}
        return rows + [r for r in self._first(_or(terms), 2 * top_k) if r[0] not in seen][: top_k - len(rows)]

    def _doc_freq(self, term: str) -> int:
        """Chunks holding ``term``; 0 on a small knowledge base (where every word is kept)."""
        if self._chunks < LARGE_KB_CHUNKS:
            return 0
        df = self._df.get(term)
        if df is None:
            # Counting matches reads the term's document list only: no scoring, no row data.
            row = self._conn.execute("SELECT count(*) FROM chunks WHERE chunks MATCH ?", (_or([term]),)).fetchone()
            if len(self._df) >= DF_CACHE:
                # Visitors' words are unbounded over months (names, typos, numbers): start
                # afresh rather than grow; recounting a word is a fraction of a millisecond.
                self._df.clear()
            df = self._df[term] = int(row[0])
        return df

    def _title_first(self, terms: list[str], top_k: int) -> list[tuple[Any, ...]]:
        """Up to ``top_k`` chunks with a word in their title, then any; ranked among themselves."""
        expr = _or(terms)
        rows = self._first(f"title : ({expr})", top_k)
        if len(rows) < top_k:
            seen = {r[0] for r in rows}
            rows += [r for r in self._first(expr, top_k + len(rows)) if r[0] not in seen][: top_k - len(rows)]
        return sorted(rows, key=lambda r: float(r[5]))

    def _first(self, expr: str, limit: int) -> list[tuple[Any, ...]]:
        # No ORDER BY: SQLite stops after ``limit`` matches instead of scoring them all.
        return self._ranked(expr, limit, order="")

    def _ranked(self, expr: str, limit: int, order: str = "ORDER BY rank") -> list[tuple[Any, ...]]:
        return self._conn.execute(
            "SELECT rowid, title, doc_title, source, body, bm25(chunks, ?, ?, ?) AS rank "
            f"FROM chunks WHERE chunks MATCH ? {order} LIMIT ?",
            (*WEIGHTS, expr, limit),
        ).fetchall()

    def close(self) -> None:
        """Close the index."""
        self._conn.close()


class SearchKnowledgeBaseArgs(BaseModel):
    """Arguments of searchKnowledgeBase (the model's contract)."""

    model_config = ConfigDict(extra="ignore")

    query: str = Field(min_length=1, max_length=1000, description="The visitor's question, in plain words.")
    topK: float = Field(3, ge=1, le=10, description="How many passages to return (1-10).")


def make_tool(kb: KnowledgeBase) -> Tool:
    """The searchKnowledgeBase tool over one index."""

    def search(args: SearchKnowledgeBaseArgs, ctx: ToolContext) -> dict[str, Any]:
        if not match_expression(args.query):
            raise ToolError("the query has no words to search for", "search with the visitor's question in words")
        hits = kb.search(args.query, int(args.topK))
        return {
            "results": [{"title": h.title, "source": h.doc_title, "text": h.text} for h in hits],
            "note": (
                "Answer from these passages in your own short words; figures are typical, not a quote."
                if hits
                else "Nothing found in the knowledge base; offer to have a loan officer follow up."
            ),
        }

    return Tool(
        name="searchKnowledgeBase",
        description=(
            "Search the lender's knowledge base (products, documents needed, application process, typical "
            "terms). Use it before answering product questions; answer from the passages."
        ),
        args=SearchKnowledgeBaseArgs,
        func=search,
    )
