"""perplexitySearch against a real HTTP server on loopback that speaks Perplexity's chat-completions API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kiosk.leads.store import Store
from kiosk.tools.websearch import trim_for_speech
from tests.toolkit import call, make_ctx, make_registry

ANSWER = (
    "**Median rent** in Austin was about $1,700 a month in 2024 [1][2]. Rents fell slightly from the year "
    "before as new apartments opened [3]. Suburbs such as Round Rock ran a little lower. " + "More detail. " * 40
)


class FakePerplexity(ThreadingHTTPServer):
    """Records requests; answers with ``status`` and ``reply``; ``hold`` blocks replies (time-outs)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.reply: Any = {
            "id": "x",
            "model": "sonar",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}}],
            "citations": ["https://a.example/rent", "https://b.example", "https://c.example", "https://d.example"],
            "search_results": [{"title": "Austin rent report", "url": "https://a.example/rent"}],
        }
        self.hold = threading.Event()
        self.hold.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakePerplexity

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers["Authorization"], "body": body})
        self.server.hold.wait(10)
        data = json.dumps(self.server.reply).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[FakePerplexity]:
    server = FakePerplexity()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.hold.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _search(url: str, key: str | None, tmp_path: Path, query: str = "median rent in Austin") -> dict[str, Any]:
    return call(make_registry(url, key), "perplexitySearch", {"query": query}, make_ctx(Store(tmp_path / "k.db")))


def test_an_answer_is_trimmed_for_speech_with_its_sources(fake: FakePerplexity, tmp_path: Path) -> None:
    out = _search(fake.url, "pplx-test", tmp_path)
    assert out["answer"].startswith("Median rent in Austin was about $1,700 a month in 2024.")
    assert "[1]" not in out["answer"] and "**" not in out["answer"]
    assert len(out["answer"]) <= 300 and out["answer"].endswith(".")
    assert out["sources"] == [{"title": "Austin rent report", "url": "https://a.example/rent"}]
    (req,) = fake.requests
    assert req["path"] == "/chat/completions"
    assert req["auth"] == "Bearer pplx-test"
    assert req["body"]["model"] == "sonar"
    assert req["body"]["messages"][-1] == {"role": "user", "content": "median rent in Austin"}


def test_citations_are_the_sources_when_there_are_no_search_results(fake: FakePerplexity, tmp_path: Path) -> None:
    del fake.reply["search_results"]
    out = _search(fake.url, "k", tmp_path)
    assert [s["url"] for s in out["sources"]] == ["https://a.example/rent", "https://b.example", "https://c.example"]


def test_without_a_key_web_search_is_not_configured(fake: FakePerplexity, tmp_path: Path) -> None:
    out = _search(fake.url, None, tmp_path)
    assert out["error"] == "web search is not configured"
    assert fake.requests == []


@pytest.mark.parametrize(("status", "reply"), [(500, {"error": "x"}), (401, {}), (200, {"choices": []}), (200, [1])])
def test_service_failures_become_error_outputs(
    fake: FakePerplexity, tmp_path: Path, status: int, reply: Any
) -> None:
    fake.status, fake.reply = status, reply
    out = _search(fake.url, "k", tmp_path)
    assert out["error"].startswith("web search")
    assert out["fix"]


def test_a_slow_service_times_out(fake: FakePerplexity, tmp_path: Path) -> None:
    fake.hold.clear()  # the server holds its reply; the client's 2 s limit must end the call
    out = _search(fake.url, "k", tmp_path)
    assert out["error"] == "web search took too long"


def test_trim_cuts_at_a_word_when_there_is_no_sentence_end() -> None:
    assert trim_for_speech("word " * 100, 50).endswith("…")
    assert len(trim_for_speech("word " * 100, 50)) <= 51
    assert trim_for_speech("See [the guide](https://x.example) now.", 100) == "See the guide now."
