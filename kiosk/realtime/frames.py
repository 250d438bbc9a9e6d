"""What the session core does before it trusts a frame: size and kind limits, and quiet logging.

The service's frames are JSON text. A binary frame, a frame larger than anything the
service sends, or a broken one is skipped; the reason is logged, but a hostile or broken
peer can send thousands a second, so each reason is logged at most once per interval
with a count of what was held back (:class:`LogLimiter`, time passed in).

Size limits, chosen on purpose: the largest frame the kiosk expects is ``session.updated``
echoing the instructions and tools (well under 100 KB); an audio delta is a few KB.
:data:`MAX_FRAME_CHARS` (1 MiB) is skipped by the core; :data:`WEBSOCKET_MAX_BYTES` (4 MiB)
is the WebSocket's own limit, above which the library closes the connection (code 1009)
and the visit reconnects: a Pi never buffers more than that for one frame.
"""

from __future__ import annotations

MAX_FRAME_CHARS = 1 << 20
WEBSOCKET_MAX_BYTES = 4 << 20


def screen(frame: str | bytes) -> str | None:
    """Why a raw frame must be skipped before parsing, or None when it may be parsed."""
    if isinstance(frame, bytes | bytearray | memoryview):
        return "binary frame"
    if len(frame) > MAX_FRAME_CHARS:
        return f"oversized frame ({len(frame)} characters)"
    return None


class LogLimiter:
    """At most one log line per key per ``interval_s``; counts the lines it held back."""

    def __init__(self, interval_s: float = 10.0, max_keys: int = 64) -> None:
        self._interval = interval_s
        self._max_keys = max_keys
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str, now: float) -> int | None:
        """None to stay quiet; else how many lines of ``key`` were held back since the last one."""
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        if key not in self._last and len(self._last) >= self._max_keys:
            # Keys come from frame contents: forget the oldest rather than grow without bound.
            oldest = next(iter(self._last))
            self._last.pop(oldest)
            self._held.pop(oldest, None)
        self._last[key] = now
        return self._held.pop(key, 0)
