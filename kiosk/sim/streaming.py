"""How the simulator answers: its options and faults, and a response streamed like the service's
(created, output items, audio and transcript deltas, function calls, done)."""


from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kiosk.audio.pcm import BYTES_PER_MS
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


def sim_id(prefix: str) -> str:
    """A fresh server-side id (``resp_sim000001``), unique in this process."""
    return f"{prefix}_sim{next(_ids):06d}"



class Responder:
    """Response streaming for one simulated session (mixed into :class:`~kiosk.sim.session.SimSession`)."""

    opts: SimOptions
    scenario: Scenario
    session: dict[str, Any]
    items: dict[str, dict[str, Any]]
    audio_ms: dict[str, int]
    vad: EnergyVad
    active: asyncio.Task[None] | None
    active_id: str | None
    pending_tool_turn: Turn | None
    tool_values: dict[str, Any]
    idle_from_ms: int | None
    deltas_sent: int
    last_item: str | None
    ws: ServerConnection

    async def emit(self, event: dict[str, Any]) -> None:
        """Send one server event (the session implements it)."""
        raise NotImplementedError

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
        rid = sim_id("resp")
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
        item_id, call_id = sim_id("item"), sim_id("call")
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
        item_id = sim_id("item")
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


def merge_update(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Apply a ``session.update`` the way the service does: nested objects merge, values replace."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge_update(into[k], v)
        else:
            into[k] = v


def _fill(template: str, values: dict[str, Any]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values.get(m.group(1), m.group(0))), template)


