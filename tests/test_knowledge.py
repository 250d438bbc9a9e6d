"""searchKnowledgeBase: chunking, ranking on the shipped knowledge base, FTS syntax safety, the index file."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.tools.knowledge import (
    DF_CACHE,
    Chunk,
    Hit,
    KnowledgeBase,
    chunk_markdown,
    load_chunks,
    match_expression,
    plan,
)
from tests.toolkit import CONFIG

KB_DIR = CONFIG / "knowledge"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.open_or_build(KB_DIR)


def test_chunks_are_cut_at_headings_and_carry_the_document_title() -> None:
    text = "# Guide\n\nIntro words.\n\n## First part\nAlpha beta.\n\n### Deeper\nGamma.\n## Empty\n\n"
    chunks = chunk_markdown(text, "guide.md")
    assert [(c.title, c.body) for c in chunks] == [
        ("Guide", "Intro words."),
        ("First part", "Alpha beta."),
        ("Deeper", "Gamma."),
    ]
    assert {c.doc_title for c in chunks} == {"Guide"}
    assert {c.source for c in chunks} == {"guide.md"}


def test_a_document_without_a_title_is_named_after_its_file() -> None:
    assert chunk_markdown("## Part\ntext", "typical-terms.md")[0].doc_title == "Typical terms"


def test_the_dscr_documents_question_finds_the_dscr_documents_section_first(kb: KnowledgeBase) -> None:
    hits = kb.search("What documents do I need for a DSCR loan?", 3)
    assert hits[0].title == "Documents needed for a DSCR loan"
    assert hits[0].doc_title == "DSCR rental loans"
    assert hits[0].source == "dscr-loans.md"


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("how fast can a hard money loan close", "How fast a hard money loan can close"),
        ("what is the 70 percent rule", "The 70 percent rule for flips"),
        ("how do rehab draws work", "How rehab draws work"),
        ("what is a release clause on a blanket loan", "Release clauses"),
        ("which documents for a flip loan", "Documents for a fix-and-flip loan"),
        ("what are the steps to apply", "Steps from first conversation to closing"),
        ("typical rates for portfolio loans", "Typical portfolio loan terms"),
    ],
)
def test_other_questions_find_their_section_in_the_top_two(kb: KnowledgeBase, question: str, title: str) -> None:
    assert title in [h.title for h in kb.search(question, 2)]


def test_the_starter_knowledge_base_covers_what_the_issue_asks() -> None:
    chunks = load_chunks(KB_DIR)
    titles = " | ".join(c.title for c in chunks).lower()
    for product in ("dscr", "hard money", "fix-and-flip", "portfolio"):
        assert f"typical {product} loan terms" in titles or f"typical {product} rental loan terms" in titles
        assert any("document" in c.title.lower() and product.split("-")[0] in c.title.lower() for c in chunks)
    assert "steps from first conversation to closing" in titles
    terms = [c for c in chunks if c.title.lower().startswith("typical") and "terms" in c.title.lower()]
    assert len(terms) >= 4
    assert all("typical" in c.body and "not a quote" in c.body for c in terms)


@pytest.mark.parametrize(
    "query",
    ['"dscr', "dscr*", "NEAR(dscr loan)", "-loan", "dscr AND OR NOT", "title:dscr", "^dscr", "(((", "a\"b'c", "{x}"],
)
def test_fts_syntax_in_visitor_text_is_plain_words(kb: KnowledgeBase, query: str) -> None:
    hits = kb.search(query, 3)
    assert isinstance(hits, list)
    if "dscr" in query.lower():
        assert hits and "dscr" in (hits[0].title + hits[0].doc_title + hits[0].text).lower()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_no_text_breaks_a_query(query: str) -> None:
    kb = _shared()
    hits = kb.search(query, 3)
    assert len(hits) <= 3
    assert all(h.title and h.doc_title for h in hits)


_KB: list[KnowledgeBase] = []


def _shared() -> KnowledgeBase:
    if not _KB:
        _KB.append(KnowledgeBase.open_or_build(KB_DIR))
    return _KB[0]


def test_match_expression_quotes_every_word() -> None:
    expr = match_expression('What "documents" do I NEED for a DSCR* loan?')
    assert expr == '"documents" OR "need" OR "dscr" OR "loan"'
    assert match_expression("the and of") == '"the" OR "and" OR "of"'  # only stopwords: keep them
    assert match_expression("?!* -") == ""


def test_the_index_file_is_reused_and_rebuilt_when_the_markdown_changes(tmp_path: Path) -> None:
    src = tmp_path / "kb"
    src.mkdir()
    (src / "a.md").write_text("# Alpha doc\n## Zebra facts\nStriped animals.\n")
    index = tmp_path / "state" / "index.sqlite"
    first = KnowledgeBase.open_or_build(src, index)
    assert [h.title for h in first.search("zebra")] == ["Zebra facts"]
    first.close()
    # A marker row proves the next open reuses the file instead of rebuilding it.
    with sqlite3.connect(index) as conn:
        conn.execute("INSERT INTO chunks (title, doc_title, body, source) VALUES ('Marker', 'm', 'okapi', 'm.md')")
    assert [h.title for h in KnowledgeBase.open_or_build(src, index).search("okapi")] == ["Marker"]
    (src / "b.md").write_text("# Beta doc\n## Okapi notes\nForest giraffes.\n")
    rebuilt = KnowledgeBase.open_or_build(src, index)
    assert [h.title for h in rebuilt.search("okapi")] == ["Okapi notes"]
    assert len(rebuilt) == 2


def test_a_big_knowledge_base_builds_from_chunks_programmatically() -> None:
    chunks = (Chunk(source=f"f{i % 50}.md", doc_title=f"Doc {i % 50}", title=f"Section {i}",
                    body=f"word{i} common text about loans number {i}") for i in range(10_000))
    kb = KnowledgeBase.build(chunks)
    assert len(kb) == 10_000
    assert [h.title for h in kb.search("word4242 loans", 1)] == ["Section 4242"]


def test_on_a_large_knowledge_base_a_word_in_every_chunk_finds_the_chunk_titled_with_it() -> None:
    # 'loan' is in every body (bm25 gives it no weight); one section is titled with it.
    chunks = [Chunk(source="f.md", doc_title="Doc", title=f"Section {i}", body=f"a loan text number {i}")
              for i in range(1_500)]
    chunks[777] = Chunk(source="f.md", doc_title="Doc", title="Loan basics", body="what a loan is")
    kb = KnowledgeBase.build(chunks)
    hits = kb.search("loan", 3)
    assert hits[0].title == "Loan basics"
    assert len(hits) == 3


def test_on_a_small_knowledge_base_every_try_ranks_all_its_matches() -> None:
    # Below LARGE_KB_CHUNKS no word is counted (df 0): every word (AND), then any word (OR).
    assert plan(["dscr", "loan"], {"dscr": 0, "loan": 0}, 120) == ['"dscr" AND "loan"', '"dscr" OR "loan"']
    assert plan(["dscr"], {"dscr": 0}, 120) == ['"dscr"']


def test_on_a_large_knowledge_base_no_try_ranks_more_chunks_than_the_bound() -> None:
    df = {"rare": 40, "dscr": 700, "tax": 4500, "term": 4800}
    tries = plan(["tax", "rare", "dscr", "term"], df, 10_000)
    # AND: ~10000 * 0.45 * 0.004 * 0.07 * 0.48 chunks, cheap; the rarest within the bound;
    # any word would match ~10000 chunks: only those with a word in a title are ranked.
    assert tries == [
        '"tax" AND "rare" AND "dscr" AND "term"',
        '"rare" OR "dscr"',
        '{title doc_title} : ("tax" OR "rare" OR "dscr" OR "term")',
    ]
    assert plan(["tax", "term"], df, 10_000) == [
        '{title doc_title} : ("tax" AND "term")',
        '{title doc_title} : ("tax" OR "term")',
    ]


def _steps(conn: sqlite3.Connection, run: Callable[[], object]) -> int:
    """SQLite virtual-machine steps (in hundreds) that ``run()`` took on ``conn``: work, not time."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(tick, 100)
    try:
        run()
    finally:
        conn.set_progress_handler(None, 100)
    return steps[0]


def test_on_a_large_knowledge_base_a_common_word_is_not_ranked_across_every_chunk_holding_it(
    tmp_path: Path,
) -> None:
    # 'loan' in 45 % of 6000 chunks (kept: under half), in three section titles.
    chunks = [
        Chunk(source="f.md", doc_title="Doc", title=f"Section {i}",
              body=("a loan text" if i % 20 < 9 else "other text") + f" number {i}")
        for i in range(6_000)
    ]
    for i in (100, 2000, 4000):
        chunks[i] = Chunk(source="f.md", doc_title="Doc", title=f"Loan topic {i}", body=f"a loan text {i}")
    KnowledgeBase.build(chunks, tmp_path / "kb.db").close()
    conn = sqlite3.connect(tmp_path / "kb.db", check_same_thread=False)
    kb = KnowledgeBase(conn)
    hits: list[Hit] = []
    searched = _steps(conn, lambda: hits.extend(kb.search("loan", 3)))
    assert sorted(h.title for h in hits) == ["Loan topic 100", "Loan topic 2000", "Loan topic 4000"]
    ranked_all = _steps(conn, lambda: conn.execute(
        "SELECT rowid, bm25(chunks) AS r FROM chunks WHERE chunks MATCH 'loan' ORDER BY r LIMIT 3").fetchall())
    assert ranked_all > 2700 * 2 // 100  # ranking all 2700 chunks holding it takes steps per chunk
    assert searched * 3 < ranked_all, (searched, ranked_all)
    kb.close()



def test_the_word_counts_of_a_large_knowledge_base_stay_bounded_over_a_long_life() -> None:
    chunks = [Chunk(source="f.md", doc_title="Doc", title=f"Section {i}", body=f"loan text {i}") for i in range(1_200)]
    kb = KnowledgeBase.build(chunks)
    for i in range(DF_CACHE + 50):  # months of visitors' words: names, typos, numbers
        kb._doc_freq(f"word{i}")  # the cache behind search(), without 20,000 searches
    assert len(kb._df) <= DF_CACHE
    assert [h.title for h in kb.search("loan 777", 1)] == ["Section 777"], "and search still works"
