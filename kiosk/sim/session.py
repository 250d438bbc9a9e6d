"""One simulated Realtime session: a client connection, its state, and the client events it handles.

It refuses what the service refuses, the way the service does: a bad key is an
``invalid_api_key`` error and then close 3000 with reason
``invalid_request_error.invalid_api_key``; an unknown or shut-down model is
``model_not_found`` and close 3000; expiry is ``session_expired`` and close 1001; a
client event with a wrong shape or value is an ``error`` naming the ``param`` and the
client's ``event_id``. Truncation is accepted only for assistant audio items, above 0 ms
and within the audio the server holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kiosk.sim.listening import Listener
from kiosk.sim.options import SimOptions, sim_id
from kiosk.sim.protocol import ClientEventError, check_values, error_event, model_refusal, validate_client_event
from kiosk.sim.scenario import Turn
from kiosk.sim.streaming import GOODBYE_ASKED, merge_update
from kiosk.sim.vad import EnergyVad

log = logging.getLogger(__name__)

INVALID_KEY_REASON = "invalid_request_error.invalid_api_key"
# What "garbage_then_close" sends: an audio delta of invalid base64 and wrong types, deep nesting, bytes.
HOSTILE: list[str | bytes] = [
    '{"type": "response.output_audio.delta", "delta": "!!", "item_id": 1}',
    "[" * 5000 + "]" * 5000,
    b"\x00\xff",
]


class SimSession(Listener):
    """The state of one client connection."""

    def __init__(self, ws: ServerConnection, opts: SimOptions, model: str) -> None:
        self.ws = ws
        self.opts = opts
        self.model = model
        self.scenario = opts.scenario
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.session: dict[str, Any] = {
            "type": "realtime",
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "",
            "tools": [],
            "audio": {"input": {"turn_detection": {"type": "server_vad"}}},
        }
        self.items: dict[str, dict[str, Any]] = {}
        self.audio_ms: dict[str, int] = {}  # assistant item -> audio sent
        self.truncated: dict[str, tuple[int, int]] = {}  # assistant item -> (audio it had, audio kept)
        self.vad = EnergyVad()
        self.turn_index = 0
        self.buffer_item: str | None = None
        self.active: asyncio.Task[None] | None = None
        self.active_id: str | None = None
        self.pending_tool_turn: Turn | None = None
        self.retry_with = None
        self.tool_values: dict[str, Any] = {}
        self.idle_from_ms: int | None = None
        self.deltas_sent = 0
        self.last_item: str | None = None
        self.persona_lost: list[str] = []  # response.create events whose instructions dropped the session's
        self.background: set[asyncio.Task[None]] = set()
        self._tail = None
        self.closed = asyncio.Event()
        self.configured = asyncio.Event()  # the first session.update was handled
        self._expiring: asyncio.Task[None] | None = None

    # -- plumbing -------------------------------------------------------------------

    async def emit(self, event: dict[str, Any]) -> None:
        """Send one server event (with a fresh event id)."""
        event.setdefault("event_id", sim_id("event"))
        if self.opts.record_sent:
            self.sent.append(event)
        await self.ws.send(json.dumps(event))

    async def error(
        self, code: str, message: str, param: str | None = None, client_event_id: str | None = None
    ) -> None:
        """Send an ``error`` event in the service's shape."""
        await self.emit(error_event(sim_id("event"), code, message, param, client_event_id))

    async def _refuse(self, code: str, message: str, param: str | None = None) -> None:
        """An error that ends the connection: the event, then close 3000 naming it."""
        await self.error(code, message, param)
        await self.ws.close(3000, f"invalid_request_error.{code}")

    # -- main loop ------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes."""
        try:
            if await self._opening():
                async for frame in self.ws:
                    await self.handle(frame)
        except ConnectionClosed:
            pass
        finally:
            for task in [self.active, self._expiring, *self.background, *(self._tail[:1] if self._tail else ())]:
                if task is not None:
                    task.cancel()
            self.closed.set()

    async def _opening(self) -> bool:
        """What happens before the first client event; False when the connection is over."""
        faults, misbehave = self.opts.faults, self.opts.faults.misbehave
        if misbehave == "drop_at_once":
            self.ws.transport.abort()
            return False
        if faults.reject_with_close_3000:
            await self.ws.close(3000, INVALID_KEY_REASON)
            return False
        if faults.reject_key:
            await self._refuse("invalid_api_key", "Incorrect API key provided.")
            return False
        refusal = model_refusal(self.model, self.opts.habits.retired_models)
        if refusal is not None:
            await self._refuse("model_not_found", refusal, "model")
            return False
        await self.emit({"type": "session.created", "session": self.session_view()})
        if misbehave == "close_3000":
            await self.ws.close(3000, "invalid_request_error.unexpected_condition")
            return False
        if misbehave == "expire_at_once":
            await self._expire_now()
            return False
        if misbehave == "garbage_then_close":
            for raw in HOSTILE:
                await self.ws.send(raw)
            await self.ws.close()
            return False
        for raw in faults.inject_on_connect:
            await self.ws.send(raw)
        if faults.expire_after_s is not None:
            # One expiry per fault setting, so the replacement connection lives on.
            delay, faults.expire_after_s = faults.expire_after_s, None
            asyncio.get_running_loop().call_later(delay, self.expire)
        return True

    async def _expire_now(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.error("session_expired", "Your session hit the maximum duration of 60 minutes.")
            await self.ws.close(1001, "session expired")

    def expire(self) -> None:
        """Expire this session now (``session_expired`` error, then close 1001)."""
        self._expiring = asyncio.get_running_loop().create_task(self._expire_now())

    async def handle(self, frame: str | bytes) -> None:
        """Handle one client frame."""
        try:
            data = json.loads(frame)
        except (json.JSONDecodeError, UnicodeDecodeError):
            await self.error("invalid_json", "The server could not parse the JSON.")
            return
        eid = data.get("event_id") if isinstance(data, dict) else None
        try:
            event = validate_client_event(data)
            check_values(event, self.model, self.opts.habits.retired_models)
        except ClientEventError as exc:
            self.received.append(data if isinstance(data, dict) else {"raw": data})
            await self.error(exc.code, exc.message, exc.param, eid if isinstance(eid, str) else None)
            return
        self.received.append(event)
        handler = getattr(self, "on_" + event["type"].replace(".", "_"))
        await handler(event)

    # -- client events --------------------------------------------------------------

    def session_view(self) -> dict[str, Any]:
        """The session object as the server reports it."""
        return dict(self.session)

    async def on_session_update(self, e: dict[str, Any]) -> None:
        """Merge the update (one level deep for nested objects) and confirm it."""
        faults = self.opts.faults
        if faults.misbehave == "silent":
            return
        merge_update(self.session, e["session"])
        td = self.turn_detection()
        clock = self.vad.pos_ms  # the input audio clock goes on across updates
        self.vad = EnergyVad(
            float(td.get("threshold", 0.5)),
            int(td.get("prefix_padding_ms", 300)),
            int(td.get("silence_duration_ms", 500)),
        )
        self.vad.pos_ms = clock
        await self.emit({"type": "session.updated", "session": self.session_view()})
        self.configured.set()
        if faults.misbehave == "expire_when_configured":
            await self._expire_now()
            return
        if faults.close_3000_reason is not None:
            faults.close_after_update, faults.close_3000_reason = (3000, faults.close_3000_reason), None
        if faults.close_after_update is not None:
            (code, reason), faults.close_after_update = faults.close_after_update, None
            await self.ws.close(code, reason)
            return
        frames, faults.inject_frames = faults.inject_frames, []
        for raw in frames:
            await self.ws.send(raw)

    async def on_input_audio_buffer_commit(self, e: dict[str, Any]) -> None:
        """A manual commit; under server VAD a client should not send it."""
        await self.error(
            "input_audio_buffer_commit_empty",
            "Error committing input audio buffer: buffer too small.",
            None,
            e.get("event_id"),
        )

    async def on_input_audio_buffer_clear(self, e: dict[str, Any]) -> None:
        """Clear the input buffer."""
        await self.emit({"type": "input_audio_buffer.cleared"})

    async def on_conversation_item_create(self, e: dict[str, Any]) -> None:
        """Add an item; function outputs feed later tool-argument templates."""
        item = dict(e["item"])
        item.setdefault("id", sim_id("item"))
        item["object"] = "realtime.item"
        item.setdefault("status", "completed")
        if item.get("type") == "function_call_output":
            with contextlib.suppress(json.JSONDecodeError, TypeError):
                out = json.loads(item.get("output") or "")
                if isinstance(out, dict):
                    self.tool_values.update({k: v for k, v in out.items() if isinstance(v, str | int | float)})
        await self.add_item(item)

    async def on_conversation_item_retrieve(self, e: dict[str, Any]) -> None:
        """Return an item."""
        item = self.items.get(e["item_id"])
        if item is None:
            await self._item_not_found(e)
            return
        await self.emit({"type": "conversation.item.retrieved", "item": item})

    async def _item_not_found(self, e: dict[str, Any]) -> None:
        await self.error("item_not_found", f"Item with item_id not found: {e['item_id']}", "item_id", e.get("event_id"))

    async def on_conversation_item_truncate(self, e: dict[str, Any]) -> None:
        """Truncate an assistant item's audio to what the visitor heard."""
        item_id, end, eid = e["item_id"], e["audio_end_ms"], e.get("event_id")
        item = self.items.get(item_id)
        if item is None:
            await self._item_not_found(e)
            return
        if item.get("role") != "assistant" or item_id not in self.audio_ms or end == 0:
            await self.error("invalid_value", "Only model output audio messages can be truncated", "item_id", eid)
            return
        have = max(0, self.audio_ms[item_id] - self.opts.habits.server_audio_short_ms)
        if end > have:
            await self.error("invalid_value", f"Audio content of {have}ms is already shorter than {end}ms",
                             "audio_end_ms", eid)  # fmt: skip
            return
        self.truncated[item_id] = (self.audio_ms[item_id], end)
        self.audio_ms[item_id] = end
        await self.emit({"type": "conversation.item.truncated", "item_id": item_id,
                         "content_index": e["content_index"], "audio_end_ms": end})  # fmt: skip

    async def on_conversation_item_delete(self, e: dict[str, Any]) -> None:
        """Delete an item."""
        if self.items.pop(e["item_id"], None) is None:
            await self._item_not_found(e)
            return
        await self.emit({"type": "conversation.item.deleted", "item_id": e["item_id"]})

    async def on_response_create(self, e: dict[str, Any]) -> None:
        """A client-requested response: greeting, tool follow-up, retry, or instructed reply."""
        eid = e.get("event_id")
        faults = self.opts.faults
        if faults.refuse_response_creates > 0:
            faults.refuse_response_creates -= 1
            await self.error("string_above_max_length", "Invalid 'response.instructions': string too long.",
                             "response.instructions", eid)  # fmt: skip
            return
        if self.active is not None:
            message = f"Conversation already has an active response in progress: {self.active_id}."
            await self.error("conversation_already_has_active_response", message, None, eid)
            return
        response = e.get("response") or {}
        metadata = response.get("metadata")
        extra = self._extra_instructions(response.get("instructions"), eid)
        retry = self.answer_for_retry()
        if self.pending_tool_turn is not None:
            turn, self.pending_tool_turn = self.pending_tool_turn, None
            await self.launch(turn.reply or self.scenario.fallback, tools=None, metadata=metadata)
        elif retry is not None:
            await self.launch(retry[0], tools=retry[1], metadata=metadata)
        elif extra and GOODBYE_ASKED.search(extra):
            await self.launch(self.scenario.goodbye, tools=None, metadata=metadata)
        elif not any(i.get("role") == "user" for i in self.items.values()):
            await self.launch(self.scenario.greeting, tools=None, metadata=metadata)
        else:
            await self.launch(self.scenario.fallback, tools=None, metadata=metadata)

    def _extra_instructions(self, instructions: Any, eid: Any) -> str:
        """What a response's instructions add to the session's; records a request that drops them.

        Response instructions replace the session's for that response: a client that sends
        only its extra line has the model speak without its persona for that turn.
        """
        if not isinstance(instructions, str):
            return ""
        persona = self.session.get("instructions")
        if isinstance(persona, str) and persona:
            if persona not in instructions:
                self.persona_lost.append(str(eid))
                log.warning("response.create %s replaces the session's instructions (persona lost)", eid)
                return instructions
            return instructions.replace(persona, "")
        return instructions

    async def on_response_cancel(self, e: dict[str, Any]) -> None:
        """Cancel the active response."""
        if self.active is None:
            await self.error(
                "response_cancel_not_active", "Cancellation failed: no active response found.", None, e.get("event_id")
            )
            return
        await self.cancel_active("client_cancelled")
