"""An offline Realtime server that speaks the GA protocol, for the demo, tests and benchmarks.

One :class:`SimServer` listens on loopback at ``/v1/realtime?model=...``. Each connection
gets a :class:`SimSession`: it validates client events like the service (same ``error``
shape), runs an energy VAD over appended audio (``speech_started``/``speech_stopped``/
``committed``), answers turns from a :class:`~kiosk.sim.scenario.Scenario` faster than
real time (audio and transcript deltas), makes the scenario's function calls, honours
``interrupt_response`` and truncation, and can inject faults. Every client event it
receives is kept in ``received`` so tests can check what a kiosk really sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kiosk.audio.pcm import BYTES_PER_MS
from kiosk.sim.protocol import ClientEventError, error_event, validate_client_event
from kiosk.sim.scenario import Reply, Scenario, Turn
from kiosk.sim.vad import EnergyVad

log = logging.getLogger(__name__)

DELTA_MS = 100  # audio per output_audio.delta
# Instructions that ask the model to close the conversation (time up, visitor walked away)
# get the scenario's goodbye, as a real model would say one.
GOODBYE_ASKED = re.compile(r"goodbye|farewell|ending the (chat|conversation|session)", re.I)


@dataclass
class Faults:
    """Fault injection, set per server (tests flip them between connections)."""

    reject_key: bool = False  # answer with an invalid_api_key error, then close
    reject_with_close_3000: bool = False  # close with code 3000 instead
    expire_after_s: float | None = None  # session_expired error + close after this long
    drop_after_deltas: int | None = None  # close abruptly after this many audio deltas (once)
    think_ms: int = 0  # fixed "thinking" delay before each response streams
    http_status: int | None = None  # refuse the handshake with this HTTP status
    inject_frames: list[str] = field(default_factory=list)  # raw frames sent after session.updated (once)


@dataclass
class SimOptions:
    """How the simulator behaves."""

    scenario: Scenario
    stream_speed: float = 8.0  # how much faster than real time replies stream
    faults: Faults = field(default_factory=Faults)
    record_sent: bool = False  # keep every emitted server event (conformance tests)


_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_sim{next(_ids):06d}"


class SimSession:
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
        event.setdefault("event_id", _id("event"))
        if self.opts.record_sent:
            self.sent.append(event)
        await self.ws.send(json.dumps(event))

    async def error(
        self, code: str, message: str, param: str | None = None, client_event_id: str | None = None
    ) -> None:
        """Send an ``error`` event in the service's shape."""
        await self.emit(error_event(_id("event"), code, message, param, client_event_id))

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
        _merge(self.session, e["session"])
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
                self.buffer_item = _id("item")
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
        item_id = self.buffer_item or _id("item")
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
            item_id = _id("item")
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
        item.setdefault("id", _id("item"))
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

    async def add_item(self, item: dict[str, Any]) -> None:
        """Append an item to the conversation and announce it."""
        self.items[item["id"]] = item
        await self.emit({"type": "conversation.item.added", "previous_item_id": self.last_item, "item": item})
        await self.emit({"type": "conversation.item.done", "previous_item_id": self.last_item, "item": item})
        self.last_item = item["id"]

    async def start_response(self, turn: Turn | None) -> None:
        """Answer a committed turn (cancelling nothing: the VAD already did)."""
        if turn is not None and turn.tools:
            await self.launch(None, tools=turn)
        else:
            await self.launch(turn.reply if turn and turn.reply else self.scenario.fallback, tools=None)

    async def launch(self, reply: Reply | None, tools: Turn | None) -> None:
        """Start streaming a response in the background."""
        rid = _id("resp")
        self.active_id = rid
        self.active = asyncio.get_running_loop().create_task(self._respond(rid, reply, tools))

    async def cancel_active(self, reason: str) -> None:
        """Cancel the streaming response; it reports ``cancelled`` itself."""
        task, self.active = self.active, None
        if task is not None:
            task.cancel(reason)
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _respond(self, rid: str, reply: Reply | None, tools: Turn | None) -> None:
        output: list[dict[str, Any]] = []
        usage_out = 0
        status, reason = "completed", None
        try:
            await self.emit({"type": "response.created", "response": self._response(rid, "in_progress", [], None)})
            if self.opts.faults.think_ms:
                await asyncio.sleep(self.opts.faults.think_ms / 1000)
            if tools is not None:
                for i, call in enumerate(tools.tools):
                    output.append(await self._function_call(rid, i, call.name, call.arguments))
                self.pending_tool_turn = tools
            elif reply is not None:
                usage_out = await self._audio_reply(rid, reply, output)
        except asyncio.CancelledError:
            status, reason = "cancelled", "turn_detected"
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if tools is not None:
                self.pending_tool_turn = None
        finally:
            if self.active_id == rid:
                self.active = None
                self.active_id = None
        details = {"type": status, "reason": reason} if reason else None
        with contextlib.suppress(ConnectionClosed):
            await self.emit(
                {"type": "response.done", "response": self._response(rid, status, output, details, usage_out)}
            )
        self.idle_from_ms = self.vad.pos_ms + usage_out if status == "completed" and tools is None else None

    def _response(
        self, rid: str, status: str, output: list[dict[str, Any]], details: dict[str, Any] | None, audio_ms: int = 0
    ) -> dict[str, Any]:
        user_ms = self.vad.pos_ms
        out_audio = audio_ms // 50  # ~1,200 tokens a minute
        text_in = len(str(self.session.get("instructions", ""))) // 4
        audio_in = user_ms // 100  # ~600 tokens a minute
        return {
            "object": "realtime.response",
            "id": rid,
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": "conv_sim",
            "output_modalities": ["audio"],
            "max_output_tokens": self.session.get("max_output_tokens", "inf"),
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
            "metadata": None,
            "usage": {
                "total_tokens": text_in + audio_in + out_audio + 10,
                "input_tokens": text_in + audio_in,
                "output_tokens": out_audio + 10,
                "input_token_details": {
                    "text_tokens": text_in,
                    "audio_tokens": audio_in,
                    "image_tokens": 0,
                    "cached_tokens": 0,
                    "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
                },
                "output_token_details": {"text_tokens": 10, "audio_tokens": out_audio},
            }
            if status != "in_progress"
            else None,
        }

    async def _function_call(self, rid: str, index: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        item_id, call_id = _id("item"), _id("call")
        args = _fill(json.dumps(arguments), self.tool_values)
        item = {
            "id": item_id,
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "name": name,
            "call_id": call_id,
            "arguments": "",
        }
        await self.emit({"type": "response.output_item.added", "response_id": rid, "output_index": index, "item": item})
        self.items[item_id] = item
        await self.emit({"type": "conversation.item.added", "previous_item_id": self.last_item, "item": item})
        self.last_item = item_id
        await self.emit(
            {
                "type": "response.function_call_arguments.delta",
                "response_id": rid,
                "item_id": item_id,
                "output_index": index,
                "call_id": call_id,
                "delta": args,
            }
        )
        await self.emit(
            {
                "type": "response.function_call_arguments.done",
                "response_id": rid,
                "item_id": item_id,
                "output_index": index,
                "call_id": call_id,
                "name": name,
                "arguments": args,
            }
        )
        done = {**item, "status": "completed", "arguments": args}
        self.items[item_id] = done
        await self.emit({"type": "response.output_item.done", "response_id": rid, "output_index": index, "item": done})
        await self.emit({"type": "conversation.item.done", "previous_item_id": None, "item": done})
        return done

    async def _audio_reply(self, rid: str, reply: Reply, output: list[dict[str, Any]]) -> int:
        item_id = _id("item")
        item: dict[str, Any] = {
            "id": item_id,
            "type": "message",
            "role": "assistant",
            "object": "realtime.item",
            "status": "in_progress",
            "content": [],
        }
        self.items[item_id] = item
        self.audio_ms[item_id] = 0
        ids = {"response_id": rid, "item_id": item_id, "output_index": 0}
        await self.emit({"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item})
        await self.emit({"type": "conversation.item.added", "previous_item_id": self.last_item, "item": item})
        self.last_item = item_id
        await self.emit(
            {
                "type": "response.content_part.added",
                **ids,
                "content_index": 0,
                "part": {"type": "audio", "transcript": ""},
            }
        )
        pcm = reply.pcm()
        step = DELTA_MS * BYTES_PER_MS
        words = reply.say.split(" ")
        per_chunk = max(1, len(words) * step // max(1, len(pcm)) + 1)
        w = 0
        for off in range(0, len(pcm), step):
            chunk = pcm[off : off + step]
            if w < len(words):
                text = " ".join(words[w : w + per_chunk]) + " "
                w += per_chunk
                await self.emit(
                    {"type": "response.output_audio_transcript.delta", **ids, "content_index": 0, "delta": text}
                )
            await self.emit(
                {
                    "type": "response.output_audio.delta",
                    **ids,
                    "content_index": 0,
                    "delta": base64.b64encode(chunk).decode("ascii"),
                }
            )
            self.audio_ms[item_id] += len(chunk) // BYTES_PER_MS
            self.deltas_sent += 1
            drop = self.opts.faults.drop_after_deltas
            if drop is not None and self.deltas_sent >= drop:
                self.opts.faults.drop_after_deltas = None
                self.ws.transport.abort()
                raise asyncio.CancelledError
            await asyncio.sleep(len(chunk) / BYTES_PER_MS / 1000 / self.opts.stream_speed)
        await self.emit({"type": "response.output_audio.done", **ids, "content_index": 0})
        await self.emit(
            {"type": "response.output_audio_transcript.done", **ids, "content_index": 0, "transcript": reply.say}
        )
        part = {"type": "audio", "transcript": reply.say}
        await self.emit({"type": "response.content_part.done", **ids, "content_index": 0, "part": part})
        done = {**item, "status": "completed", "content": [{"type": "output_audio", "transcript": reply.say}]}
        self.items[item_id] = done
        await self.emit({"type": "response.output_item.done", "response_id": rid, "output_index": 0, "item": done})
        await self.emit({"type": "conversation.item.done", "previous_item_id": None, "item": done})
        output.append(done)
        return len(pcm) // BYTES_PER_MS


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def _fill(template: str, values: dict[str, Any]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values.get(m.group(1), m.group(0))), template)


class SimServer:
    """The simulator's WebSocket server on loopback."""

    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        self.sessions: list[SimSession] = []
        self._new_session = asyncio.Condition()
        self._server: Server | None = None
        self.port = 0
        self.auth_headers: list[str | None] = []

    @property
    def url(self) -> str:
        """The base URL to configure a client with (``realtime.url``)."""
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen (port 0 picks a free port)."""
        self._server = await serve(self._handler, host, port, process_request=self._check_request, max_size=2**24)
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        log.info("Realtime simulator listening on %s (scenario %s)", self.url, self.opts.scenario.name)

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.auth_headers.append(request.headers.get("Authorization"))
        if self.opts.faults.http_status is not None:
            return conn.respond(self.opts.faults.http_status, "refused by fault injection\n")
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") != "/v1/realtime":
            return conn.respond(404, "Not Found\n")
        if not parse_qs(parts.query).get("model"):
            return conn.respond(400, "missing model\n")
        auth = request.headers.get("Authorization")
        if not auth or not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            return conn.respond(401, "missing bearer token\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # set once the handshake is done
        model = parse_qs(urlsplit(ws.request.path).query)["model"][0]
        session = SimSession(ws, self.opts, model)
        self.sessions.append(session)
        async with self._new_session:
            self._new_session.notify_all()
        await session.run()

    async def wait_for_session(self, n: int, *, limit_s: float) -> SimSession:
        """Wait (at most ``limit_s``) until ``n`` connections were made; return the n-th."""
        async with asyncio.timeout(limit_s), self._new_session:
            await self._new_session.wait_for(lambda: len(self.sessions) >= n)
        return self.sessions[n - 1]

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve_until_signal(server: SimServer, announce: Callable[[SimServer], None]) -> None:
    """Run a started simulator until SIGINT/SIGTERM (``kiosk sim serve``, the bench's process)."""
    announce(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()
