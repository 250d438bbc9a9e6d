"""Which response is active, which responses are the kiosk's own, and what each one asked for.

Pure bookkeeping for the session core. Every ``response.create`` the kiosk sends carries
its event id in ``metadata.client_event_id``; the service echoes it in ``response.created``,
so a response is known to be ours (and which request it answers: a greeting, a goodbye, a
retry) rather than one the server created by itself after the visitor spoke. Without the
echo, a response created while our request is pending is taken to be ours.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kiosk.realtime.effects import ToolCall

REQUESTED = "<requested>"  # our response.create is out, its response.created not in yet
KEEP = 64  # responses and requests remembered (ids come from the wire)


def obj(data: Any, key: str) -> Mapping[str, Any]:
    """``data[key]`` when both are objects, else an empty mapping."""
    value = data.get(key) if isinstance(data, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def text(data: Any, key: str) -> str:
    """``data[key]`` when it is a string, else ''."""
    value = data.get(key) if isinstance(data, Mapping) else None
    return value if isinstance(value, str) else ""


def put(d: OrderedDict[str, Any], key: str, value: Any) -> None:
    """Set ``d[key]``, forgetting the oldest entries beyond :data:`KEEP`."""
    d[key] = value
    while len(d) > KEEP:
        d.popitem(last=False)


@dataclass
class OpenResponse:
    """A response between ``response.created`` and ``response.done``."""

    calls: list[ToolCall] = field(default_factory=list)
    extra: str | None = None  # our request's extra instructions (None: the server's own response)


class Responses:
    """The active response and the kiosk's requests."""

    def __init__(self) -> None:
        self.active: str | None = None
        self.requested: str | None = None  # event id of our response.create not yet answered
        self._asked: OrderedDict[str, str | None] = OrderedDict()  # event id -> extra instructions
        self._open: OrderedDict[str, OpenResponse] = OrderedDict()
        self.statuses: OrderedDict[str, str] = OrderedDict()  # final status per response id

    def asked(self, event_id: str, extra: str | None) -> None:
        """We sent a ``response.create``: it counts as active at once (no second one may collide)."""
        put(self._asked, event_id, extra)
        self.active, self.requested = REQUESTED, event_id

    def created(self, r: Mapping[str, Any]) -> bool:
        """``response.created``: this response is now the active one (False: no id, ignored)."""
        rid = text(r, "id")
        if not rid:
            return False
        eid = text(obj(r, "metadata"), "client_event_id")
        ours = eid in self._asked or (not eid and self.active == REQUESTED)
        if ours:
            eid = eid or (self.requested or "")
            if eid == self.requested:
                self.requested = None
        put(self._open, rid, OpenResponse(extra=self._asked.pop(eid, None) if ours else None))
        self.active = rid
        return True

    def call(self, response_id: str, call: ToolCall) -> bool:
        """A complete tool call of an open response; False for a response never announced."""
        resp = self._open.get(response_id)
        if resp is None:
            return False
        resp.calls.append(call)
        return True

    def done(self, rid: str, status: str) -> OpenResponse | None:
        """``response.done``: the response is over; None when it was never announced."""
        put(self.statuses, rid, status)
        if self.active == rid or (self.active == REQUESTED and self.requested is None):
            self.active = None
        return self._open.pop(rid, None)

    def refused(self, event_id: str | None) -> None:
        """An error named our request: nothing will answer it, so it must not keep us busy."""
        if event_id and event_id == self.requested:
            self.requested = None
            if self.active == REQUESTED:
                self.active = None

    def unanswered(self) -> tuple[bool, str | None]:
        """Whether a request of ours is still unanswered (no response.created), and its extra."""
        if self.requested is None:
            return False, None
        return True, self._asked.get(self.requested)

    def lost_race(self, event_id: str | None) -> str | None:
        """Our request met another active response; returns what it asked for (to ask again)."""
        if event_id and event_id == self.requested:
            self.requested = None
        return self._asked.get(event_id or "")
