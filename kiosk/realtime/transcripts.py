"""The kiosk's own transcript of a conversation, kept by item id and in conversation order.

Two facts of the service shape it:

* input transcription is asynchronous: a visitor line may arrive before or after the
  response to it (or fail). So a visitor item gets its place when the server *commits*
  it, and its words fill that place when they land; tools that quote the visitor (consent
  evidence) can see which places are still empty and wait for them;
* what the visitor did not hear was never said: after a truncation the assistant's line
  is cut to the share of its audio that was played (and marked), after a delete it is
  dropped. The condensed transcript replayed into a new session (recycle, reconnect)
  then says only what was heard.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

VISITOR, ASSISTANT = "visitor", "assistant"
PENDING, DONE, FAILED = "pending", "done", "failed"
FAILED_MARK = "[inaudible: transcription failed]"
PENDING_MARK = "[not transcribed yet]"
CUT_MARK = "…"  # a line cut short where the visitor interrupted
MAX_ENTRIES = 400  # a ten-minute visit has a few dozen; garbage ids must not grow it forever


@dataclass
class _Entry:
    role: str
    text: str = ""
    state: str = PENDING
    kept_ms: int | None = None  # assistant audio the visitor heard, after a truncation
    received_ms: int = 0  # assistant audio received when the cut was decided


def cut_text(text: str, kept_ms: int, received_ms: int) -> str:
    """The words of ``text`` spoken in the first ``kept_ms`` of ``received_ms`` of audio, marked."""
    words = text.split()
    if received_ms <= 0 or kept_ms >= received_ms:
        return text
    keep = round(len(words) * max(0, kept_ms) / received_ms)
    return " ".join([*words[:keep], CUT_MARK])


class TranscriptBook:
    """Transcript lines by item id, in the order the items entered the conversation."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.version = 0  # bumped on every change (adapters re-read lines when it moves)

    def _put(self, item_id: str, entry: _Entry) -> _Entry:
        self._entries[item_id] = entry
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)
        self.version += 1
        return entry

    # -- visitor ----------------------------------------------------------------------

    def expect_visitor(self, item_id: str) -> None:
        """The server committed a visitor item: its words are coming (or failing)."""
        if item_id and item_id not in self._entries:
            self._put(item_id, _Entry(VISITOR))

    def visitor(self, item_id: str, text: str) -> str:
        """The visitor's words for an item landed; returns them cleaned ('' for silence)."""
        clean = text.strip()
        entry = self._entries.get(item_id)
        if entry is None or entry.role != VISITOR:
            entry = self._put(item_id, _Entry(VISITOR))
        entry.text, entry.state = clean, DONE
        self.version += 1
        return clean

    def visitor_failed(self, item_id: str) -> None:
        """The transcription of a visitor item failed: marked, never silently dropped."""
        entry = self._entries.get(item_id)
        if entry is None or entry.role != VISITOR:
            entry = self._put(item_id, _Entry(VISITOR))
        if entry.state != DONE:
            entry.text, entry.state = FAILED_MARK, FAILED
            self.version += 1

    def pending_visitor(self) -> list[str]:
        """Visitor items committed but not transcribed yet (neither done nor failed)."""
        return [i for i, e in self._entries.items() if e.role == VISITOR and e.state == PENDING]

    # -- assistant --------------------------------------------------------------------

    def assistant_started(self, item_id: str) -> None:
        """The first audio of an assistant item arrived: it takes its place in the order."""
        if item_id and item_id not in self._entries:
            self._put(item_id, _Entry(ASSISTANT))

    def knows(self, item_id: str) -> bool:
        """The item has a place in the transcript (its audio or its commit was seen)."""
        return item_id in self._entries

    def assistant(self, item_id: str, text: str, received_ms: int) -> str:
        """The assistant item's transcript; returns it as heard (cut if it was truncated)."""
        entry = self._entries.get(item_id)
        if entry is None or entry.role != ASSISTANT:
            entry = self._put(item_id, _Entry(ASSISTANT))
        entry.state = DONE
        entry.text = text if entry.kept_ms is None else cut_text(text, entry.kept_ms, received_ms or entry.received_ms)
        self.version += 1
        return entry.text

    def truncated(self, item_id: str, kept_ms: int, received_ms: int) -> None:
        """The visitor heard only ``kept_ms`` of the ``received_ms`` of audio received so far."""
        entry = self._entries.get(item_id)
        if entry is None or entry.role != ASSISTANT:
            return
        entry.kept_ms, entry.received_ms = kept_ms, received_ms
        if entry.state == DONE:
            entry.text = cut_text(entry.text, kept_ms, received_ms)
        self.version += 1

    def deleted(self, item_id: str) -> None:
        """Nothing of the item was heard: it leaves the transcript."""
        if self._entries.pop(item_id, None) is not None:
            self.version += 1

    # -- reading ----------------------------------------------------------------------

    def lines(self, *, pending: bool = True) -> list[tuple[str, str]]:
        """``(role, text)`` in conversation order; visitor items still awaited are marked."""
        out: list[tuple[str, str]] = []
        for e in self._entries.values():
            if e.state == PENDING:
                if pending and e.role == VISITOR:
                    out.append((e.role, PENDING_MARK))
                continue
            if e.text:
                out.append((e.role, e.text))
        return out

    def items(self) -> list[tuple[str, str, str]]:
        """``(item id, role, text)`` in conversation order, visitor items still awaited marked
        (consent evidence quotes the visitor by item id and fills those in when they land)."""
        out: list[tuple[str, str, str]] = []
        for item_id, e in self._entries.items():
            if e.state == PENDING:
                if e.role == VISITOR:
                    out.append((item_id, e.role, PENDING_MARK))
                continue
            if e.text:
                out.append((item_id, e.role, e.text))
        return out

    def condensed(self, max_chars: int = 2000) -> str:
        """The conversation so far as plain lines, newest kept when it is too long."""
        text = "\n".join(f"{role}: {t}" for role, t in self.lines(pending=False))
        return text[-max_chars:]

    def copy(self) -> TranscriptBook:
        """An independent copy (a replayed session continues the same transcript)."""
        book = TranscriptBook()
        book._entries = OrderedDict((k, replace(v)) for k, v in self._entries.items())
        book.version = self.version
        return book
