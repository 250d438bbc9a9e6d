"""One simulated Realtime session: a client connection, its state, and the client events it handles."""


from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kiosk.sim.protocol import ClientEventError, error_event, validate_client_event
from kiosk.sim.scenario import Turn
from kiosk.sim.streaming import GOODBYE_ASKED, Responder, SimOptions, merge_update, sim_id
from kiosk.sim.vad import EnergyVad

log = logging.getLogger(__name__)



class SimSession(Responder):
    """The state of one client connection."""

    def __init__(self, ws: ServerConnection, opts: SimOptions, model: str) -> None:
        self.ws = ws
        self.opts = opts
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
        self.tool_values: dict[str, Any] = {}
        self.idle_from_ms: int | None = None
        self.deltas_sent = 0
        self.last_item: str | None = None
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

    def turn_detection(self) -> dict[str, Any]:
        """The session's turn detection settings (empty when turned off)."""
        td = (self.session.get("audio") or {}).get("input", {}).get("turn_detection")
        return td if isinstance(td, dict) else {}

    # -- main loop ------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes."""
        faults = self.opts.faults
        if faults.reject_with_close_3000:
            await self.ws.close(3000, "invalid_api_key")
            return
        if faults.reject_key:
            await self.error("invalid_api_key", "Incorrect API key provided.")
            await self.ws.close(1008, "invalid_api_key")
            return
        await self.emit({"type": "session.created", "session": self.session_view()})
        expiry = None
        if faults.expire_after_s is not None:
            # One expiry per fault setting, so the replacement connection lives on.
            expiry = asyncio.get_running_loop().call_later(faults.expire_after_s, self._expire)
            faults.expire_after_s = None
        try:
            async for frame in self.ws:
                await self.handle(frame)
        except ConnectionClosed:
            pass
        finally:
            if expiry is not None:
                expiry.cancel()
            if self.active is not None:
                self.active.cancel()
            self.closed.set()

    def _expire(self) -> None:
        async def go() -> None:
            with contextlib.suppress(ConnectionClosed):
                await self.error("session_expired", "Your session hit the maximum duration of 60 minutes.")
                await self.ws.close(1000, "session expired")

        self._expiring = asyncio.get_running_loop().create_task(go())

    def expire(self) -> None:
        """Expire this session now (``session_expired`` error, then close)."""
        self._expire()

    async def handle(self, frame: str | bytes) -> None:
        """Handle one client frame."""
        try:
            data = json.loads(frame)
        except (json.JSONDecodeError, UnicodeDecodeError):
            await self.error("invalid_json", "The server could not parse the JSON.")
            return
        try:
            event = validate_client_event(data)
        except ClientEventError as exc:
            self.received.append(data if isinstance(data, dict) else {"raw": data})
            eid = data.get("event_id") if isinstance(data, dict) else None
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
        merge_update(self.session, e["session"])
        td = self.turn_detection()
        self.vad = EnergyVad(
            float(td.get("threshold", 0.5)),
            int(td.get("prefix_padding_ms", 300)),
            int(td.get("silence_duration_ms", 500)),
        )
        await self.emit({"type": "session.updated", "session": self.session_view()})
        self.configured.set()
        frames, self.opts.faults.inject_frames = self.opts.faults.inject_frames, []
        for raw in frames:
            await self.ws.send(raw)

    async def on_input_audio_buffer_append(self, e: dict[str, Any]) -> None:
        """Run VAD over the audio; start, stop, commit and answer turns."""
        try:
            pcm = base64.b64decode(e["audio"], validate=True)
        except (ValueError, TypeError):
            await self.error("invalid_value", "Invalid 'audio': not base64.", "audio", e.get("event_id"))
            return
        td = self.turn_detection()
        if not td:
            return
        for vev in self.vad.feed(pcm):
            if vev.started:
                self.idle_from_ms = None
                self.buffer_item = sim_id("item")
                await self.emit(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": vev.at_ms,
                        "item_id": self.buffer_item,
                    }
                )
                if td.get("interrupt_response", True) and self.active is not None:
                    await self.cancel_active("turn_detected")
            else:
                await self.speech_stopped(vev.at_ms, td)
        await self.check_idle(td)

    async def speech_stopped(self, at_ms: int, td: dict[str, Any]) -> None:
        """End of a visitor turn: commit it, transcribe it from the scenario, answer."""
        item_id = self.buffer_item or sim_id("item")
        self.buffer_item = None
        await self.emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": at_ms, "item_id": item_id})
        await self.emit(
            {"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": self.last_item}
        )
        item = {
            "id": item_id,
            "type": "message",
            "role": "user",
            "status": "completed",
            "object": "realtime.item",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self.add_item(item)
        turn = self.scenario.turns[self.turn_index] if self.turn_index < len(self.scenario.turns) else None
        self.turn_index += 1
        text = turn.visitor if turn else "(unscripted speech)"
        await self.emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": text,
                "usage": {"type": "duration", "seconds": max(1, at_ms // 1000)},
            }
        )
        if td.get("create_response", True):
            await self.start_response(turn)

    async def check_idle(self, td: dict[str, Any]) -> None:
        """``idle_timeout_ms``: silence (in audio time) after the assistant finished."""
        limit = td.get("idle_timeout_ms")
        if not isinstance(limit, int) or self.idle_from_ms is None or self.vad.speaking or self.active:
            return
        if self.vad.pos_ms - self.idle_from_ms >= limit:
            start, self.idle_from_ms = self.idle_from_ms, None
            item_id = sim_id("item")
            await self.emit(
                {
                    "type": "input_audio_buffer.timeout_triggered",
                    "audio_start_ms": start,
                    "audio_end_ms": self.vad.pos_ms,
                    "item_id": item_id,
                }
            )
            await self.launch(self.scenario.idle, tools=None)

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
            await self.error(
                "item_not_found", f"Item with item_id not found: {e['item_id']}", "item_id", e.get("event_id")
            )
            return
        await self.emit({"type": "conversation.item.retrieved", "item": item})

    async def on_conversation_item_truncate(self, e: dict[str, Any]) -> None:
        """Truncate an assistant item's audio to what the visitor heard."""
        item_id, end = e["item_id"], e["audio_end_ms"]
        if item_id not in self.items:
            await self.error("item_not_found", f"Item with item_id not found: {item_id}", "item_id", e.get("event_id"))
            return
        have = self.audio_ms.get(item_id, 0)
        if not isinstance(end, int) or end < 0 or end > have:
            await self.error(
                "invalid_value",
                f"Audio content of {have}ms is already shorter than {end}ms",
                "audio_end_ms",
                e.get("event_id"),
            )
            return
        self.truncated[item_id] = (have, end)
        self.audio_ms[item_id] = end
        await self.emit(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": e["content_index"],
                "audio_end_ms": end,
            }
        )

    async def on_conversation_item_delete(self, e: dict[str, Any]) -> None:
        """Delete an item."""
        if self.items.pop(e["item_id"], None) is None:
            await self.error(
                "item_not_found", f"Item with item_id not found: {e['item_id']}", "item_id", e.get("event_id")
            )
            return
        await self.emit({"type": "conversation.item.deleted", "item_id": e["item_id"]})

    async def on_response_create(self, e: dict[str, Any]) -> None:
        """A client-requested response: greeting, tool follow-up, or instructed reply."""
        if self.active is not None:
            await self.error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.active_id}.",
                None,
                e.get("event_id"),
            )
            return
        instructions = (e.get("response") or {}).get("instructions")
        if self.pending_tool_turn is not None:
            turn, self.pending_tool_turn = self.pending_tool_turn, None
            await self.launch(turn.reply or self.scenario.fallback, tools=None)
        elif isinstance(instructions, str) and GOODBYE_ASKED.search(instructions):
            await self.launch(self.scenario.goodbye, tools=None)
        elif not any(i.get("role") == "user" for i in self.items.values()):
            await self.launch(self.scenario.greeting, tools=None)
        else:
            await self.launch(self.scenario.fallback, tools=None)

    async def on_response_cancel(self, e: dict[str, Any]) -> None:
        """Cancel the active response."""
        if self.active is None:
            await self.error(
                "response_cancel_not_active", "Cancellation failed: no active response found.", None, e.get("event_id")
            )
            return
        await self.cancel_active("client_cancelled")

    # -- responses ------------------------------------------------------------------

