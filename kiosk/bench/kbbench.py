"""Knowledge-base search on a large generated knowledge base.

The chunks are varied text, not copies: 1,000 documents of 10 sections each, words drawn
from a Zipf distribution over the lending domain's vocabulary plus a few thousand
made-up words, with stop words mixed in like prose. Queries are visitor-like questions,
one-word queries of the commonest words (they match nearly every chunk: the known slow
case) and one-word queries of rare words.
"""

from __future__ import annotations

import random
import time
from typing import Any

from kiosk.bench.analyse import summary
from kiosk.tools.knowledge import Chunk, KnowledgeBase

DOMAIN = (  # noqa: SIM905 - a word list reads best as prose
    "loan mortgage rate property rental income dscr investor lender down payment credit score appraisal "
    "closing cost refinance cash out bridge fix flip construction portfolio duplex fourplex condo "
    "single family multifamily lease tenant vacancy insurance escrow tax title points fee origination "
    "prepayment penalty term amortization interest fixed adjustable arm balloon ltv ratio reserves "
    "bank statement asset verification llc entity guarantor personal business experience rehab budget "
    "draw schedule inspection valuation comparable market rent occupancy seasoning underwriting approval "
    "application document checklist tax return pay stub w2 1099 schedule e hoa zoning permit contractor"
).split()
STOP = "the a of to and in is for on with that this you your we can it be as are by or at from".split()  # noqa: SIM905


def _vocabulary(rng: random.Random, n: int) -> list[str]:
    syll = ["ba", "ro", "ki", "tem", "lo", "sur", "an", "vel", "dra", "min", "co", "pex", "ul", "tor", "gri"]
    made = {"".join(rng.choice(syll) for _ in range(rng.randint(2, 4))) for _ in range(n * 2)}
    # Domain words head the Zipf ranking (they are the common words of a lender's texts).
    head = list(DOMAIN)
    rng.shuffle(head)
    return head + sorted(made - set(DOMAIN))[:n]


class _Words:
    def __init__(self, rng: random.Random, vocab: list[str]) -> None:
        self.rng, self.vocab = rng, vocab
        self.weights = [1 / (i + 1) ** 1.05 for i in range(len(vocab))]  # Zipf: a few words are everywhere

    def some(self, n: int, stop_share: float = 0.35) -> list[str]:
        picks = self.rng.choices(self.vocab, self.weights, k=n)
        return [self.rng.choice(STOP) if self.rng.random() < stop_share else w for w in picks]


def chunks(n: int, seed: int = 9) -> list[Chunk]:
    """``n`` varied chunks (10 per document)."""
    rng = random.Random(seed)
    words = _Words(rng, _vocabulary(rng, 4000))
    out = []
    for i in range(n):
        doc = i // 10
        rng_doc = random.Random(doc)  # the same document title for all its sections
        doc_title = " ".join(rng_doc.choices(words.vocab[:400], k=3)).capitalize()
        body = " ".join(words.some(rng.randint(40, 140)))
        out.append(Chunk(f"doc{doc:04d}.md", doc_title, " ".join(words.some(rng.randint(2, 5), 0)).title(), body))
    return out


def queries(n: int, seed: int = 11) -> dict[str, list[str]]:
    """Visitor questions, one-word common-word queries and one-word rare-word queries."""
    rng = random.Random(seed)
    vocab = _vocabulary(random.Random(9), 4000)
    words = _Words(rng, vocab)
    questions = [" ".join(["what", "is", *words.some(rng.randint(3, 9))]) + "?" for _ in range(n)]
    common = [vocab[i % 30] for i in range(n // 4)]
    rare = [rng.choice(vocab[2000:]) for _ in range(n // 4)]
    return {"questions": questions, "common_word": common, "rare_word": rare}


def run(n_chunks: int, n_queries: int) -> dict[str, Any]:
    """Build the index, then time every query (ms); p50/p99 per kind and overall."""
    t0 = time.perf_counter()
    kb = KnowledgeBase.build(chunks(n_chunks))
    build_s = time.perf_counter() - t0
    result: dict[str, Any] = {"chunks": len(kb), "build_s": round(build_s, 2)}
    every: list[float] = []
    for kind, qs in queries(n_queries).items():
        times = []
        for q in qs:
            t = time.perf_counter()
            kb.search(q, 3)
            times.append((time.perf_counter() - t) * 1000)
        result[kind] = summary(times, 3)
        every += times
    result["all"] = summary(every, 3)
    kb.close()
    return result
