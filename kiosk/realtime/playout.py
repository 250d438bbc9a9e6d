"""Assistant audio by item: what was received, what may still be in the speaker, what was cut off.

Pure bookkeeping for the session core's barge-in rules. After the visitor interrupts, the
service cancels the response, but deltas of it already on the wire keep arriving for a
while: they belong to an *interrupted* item and are never played (playing them would
replay words after the barge-in and make the played position, and so the next truncation,
wrong). Every byte received still counts towards the item's length, which the kiosk's own
transcript uses to cut the item's text where the visitor stopped hearing it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

BYTES_PER_MS = 48  # 24 kHz * 2 bytes, mono
KEEP = 64  # items remembered per kind (ids come from the wire)


def _put(d: OrderedDict[str, int | None], key: str, value: int | None) -> None:
    d[key] = value
    while len(d) > KEEP:
        d.popitem(last=False)


class Playout:
    """Received, in-speaker and interrupted assistant audio items."""

    def __init__(self) -> None:
        self._queued: OrderedDict[str, int | None] = OrderedDict()  # bytes received since the last flush
        self._received: OrderedDict[str, int | None] = OrderedDict()  # all bytes received
        self._interrupted: OrderedDict[str, int | None] = OrderedDict()

    def audio(self, item_id: str, pcm: bytes) -> bool:
        """Audio of an item arrived; False when it must not be played (the item was interrupted)."""
        _put(self._received, item_id, self.received_bytes(item_id) + len(pcm))
        if item_id in self._interrupted:
            return False
        _put(self._queued, item_id, (self._queued.get(item_id) or 0) + len(pcm))
        return True

    def is_new(self, item_id: str) -> bool:
        """No audio of this item has reached the speaker yet."""
        return item_id not in self._queued and item_id not in self._interrupted

    def received_bytes(self, item_id: str) -> int:
        """All audio received for an item, played or not."""
        return self._received.get(item_id) or 0

    def received_ms(self, item_id: str) -> int:
        """All audio received for an item, in milliseconds."""
        return self.received_bytes(item_id) // BYTES_PER_MS

    def interrupt(self) -> bool:
        """The visitor cut in: items with audio in the speaker are interrupted. True if there were any."""
        for item_id in self._queued:
            _put(self._interrupted, item_id, None)
        return bool(self._queued)

    def flushed(self, played_ms: Mapping[str, float]) -> list[tuple[str, int, int]]:
        """After a flush: ``(item, heard ms, received ms)`` of each item not heard in full.

        Heard is what the speaker reports as played, clamped to what was received before
        the flush; items missing from ``played_ms`` were heard in full.
        """
        cut = []
        for item_id, ms in played_ms.items():
            if item_id not in self._queued:
                continue
            received_ms = (self._queued[item_id] or 0) // BYTES_PER_MS
            end = max(0, min(int(ms), received_ms))
            if end < received_ms:
                cut.append((item_id, end, received_ms))
        self._queued.clear()
        return cut
