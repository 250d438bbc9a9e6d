"""How the simulator answers: a response streamed like the service's (created, output items,
audio and transcript deltas, function calls, done), with the service's unkind habits.

* a response can fail (``status: failed`` with ``status_details.error``: quota, rate limit,
  server error) or end ``incomplete`` (``max_output_tokens``, ``content_filter``), as the
  next entries of ``Faults.response_failures`` say;
* a barge-in does not stop the audio at once: ``Habits.cancel_tail_ms`` of deltas stay in
  flight; the cancelled ``response.done`` carries the partial item after its done events;
  a client's ``response.cancel`` reports ``client_cancelled``;
* ``response.metadata`` from ``response.create`` is echoed in ``response.created`` and
  ``response.done``; usage reports cached tokens per modality (``Habits.cached_fraction``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import socket
import struct
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kiosk.audio.pcm import BYTES_PER_MS
from kiosk.sim.options import Faults, Habits, SimOptions, sim_id
from kiosk.sim.scenario import Reply, Scenario, Turn
from kiosk.sim.vad import EnergyVad

log = logging.getLogger(__name__)

__all__ = ["GOODBYE_ASKED", "Faults", "Habits", "Responder", "SimOptions", "merge_update", "sim_id"]

DELTA_MS = 100  # audio per output_audio.delta
# Instructions that ask the model to close the conversation (time up, visitor walked away)
# get the scenario's goodbye, as a real model would say one.
GOODBYE_ASKED = re.compile(r"goodbye|farewell|ending the (chat|conversation|session)", re.I)
# Failed responses: code -> (error type, message), as the service reports them.
FAILURES = {
    "insufficient_quota": ("insufficient_quota", "You exceeded your current quota: check your plan and billing."),
    "inference_rate_limit_exceeded": ("rate_limit_error", "Rate limit reached for requests. Please try again shortly."),
    "server_error": ("server_error", "The server had an error while processing your request. Sorry about that!"),
}  # fmt: skip
INCOMPLETE = frozenset({"max_output_tokens", "content_filter"})


class Responder:
    """Response streaming for one simulated session (the base of :class:`~kiosk.sim.session.SimSession`)."""

    opts: SimOptions
    scenario: Scenario
    session: dict[str, Any]
    items: dict[str, dict[str, Any]]
    audio_ms: dict[str, int]
    truncated: dict[str, tuple[int, int]]
    vad: EnergyVad
    active: asyncio.Task[None] | None
    active_id: str | None
    pending_tool_turn: Turn | None
    retry_with: tuple[Reply | None, Turn | None] | None  # what a failed response was saying
    tool_values: dict[str, Any]
    idle_from_ms: int | None
    deltas_sent: int
    last_item: str | None
    ws: ServerConnection
    _tail: tuple[asyncio.Task[None], str, asyncio.TimerHandle] | None

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

    async def launch(self, reply: Reply | None, tools: Turn | None, metadata: dict[str, Any] | None = None) -> None:
        """Start streaming a response in the background (after a cancelled one has ended)."""
        await self.finish_cancelling()
        rid = sim_id("resp")
        self.active_id = rid
        self.active = asyncio.get_running_loop().create_task(self._respond(rid, reply, tools, metadata))

    async def cancel_active(self, reason: str, tail_s: float = 0.0) -> None:
        """Cancel the streaming response (it reports ``cancelled`` itself), now or after ``tail_s``
        of audio still in flight."""
        task, self.active = self.active, None
        if task is None:
            return
        if tail_s > 0:
            handle = asyncio.get_running_loop().call_later(tail_s, task.cancel, reason)
            self._tail = (task, reason, handle)
            return
        task.cancel(reason)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def finish_cancelling(self) -> None:
        """End a response still streaming its tail now (a new one is about to start)."""
        tail, self._tail = self._tail, None
        if tail is not None:
            task, reason, handle = tail
            handle.cancel()
            task.cancel(reason)
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _respond(
        self, rid: str, reply: Reply | None, tools: Turn | None, metadata: dict[str, Any] | None
    ) -> None:
        output: list[dict[str, Any]] = []
        usage_out = 0
        status, details = "completed", None
        failures = self.opts.faults.response_failures
        outcome = failures.pop(0) if failures else None
        try:
            created = self._response(rid, "in_progress", [], None, 0, metadata)
            await self.emit({"type": "response.created", "response": created})
            if self.opts.habits.rate_limits:
                await self.emit({"type": "rate_limits.updated", "rate_limits": [
                    {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                    {"name": "tokens", "limit": 400000, "remaining": 395000, "reset_seconds": 0.75}]})  # fmt: skip
            if self.opts.faults.stall_responses > 0:  # created, and then silence for ever
                self.opts.faults.stall_responses -= 1
                await asyncio.Event().wait()
            if self.opts.faults.think_ms:
                await asyncio.sleep(self.opts.faults.think_ms / 1000)
            if outcome is not None and outcome not in INCOMPLETE:
                etype, message = FAILURES.get(outcome, ("server_error", f"The response failed ({outcome})."))
                status = "failed"
                details = {"type": "failed", "error": {"type": etype, "code": outcome, "message": message}}
                self.retry_with = (reply, tools)
            elif tools is not None:
                for i, call in enumerate(tools.tools):
                    output.append(await self._function_call(rid, i, call.name, call.arguments))
                self.pending_tool_turn = tools
            elif reply is not None:
                usage_out = await self._audio_reply(rid, reply, output, cut=outcome is not None)
            if outcome in INCOMPLETE:
                status, details = "incomplete", {"type": "incomplete", "reason": outcome}
                self.pending_tool_turn = None
        except asyncio.CancelledError as exc:
            reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "turn_detected"
            status, details = "cancelled", {"type": "cancelled", "reason": reason}
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if tools is not None:
                self.pending_tool_turn = None
        finally:
            if self.active_id == rid:
                self.active = None
                self.active_id = None
        done = self._response(rid, status, output, details, usage_out, metadata)
        with contextlib.suppress(ConnectionClosed):
            await self.emit({"type": "response.done", "response": done})
        self.idle_from_ms = self.vad.pos_ms + usage_out if status == "completed" and tools is None else None

    def _response(
        self,
        rid: str,
        status: str,
        output: list[dict[str, Any]],
        details: dict[str, Any] | None,
        audio_ms: int,
        metadata: dict[str, Any] | None,
    ) -> dict[str, Any]:
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
            "metadata": metadata,
            "usage": None if status == "in_progress" else self._usage(0 if status == "failed" else audio_ms, status),
        }

    def _usage(self, audio_ms: int, status: str) -> dict[str, Any]:
        failed = status == "failed"  # a failed response bills nothing
        out_audio = audio_ms // 50  # ~1,200 tokens a minute
        text_in = 0 if failed else len(str(self.session.get("instructions", ""))) // 4
        audio_in = 0 if failed else self.vad.pos_ms // 100  # ~600 tokens a minute
        share = self.opts.habits.cached_fraction
        cached_text, cached_audio = int(text_in * share), int(audio_in * share)
        text_out = 0 if failed else 10
        return {
            "total_tokens": text_in + audio_in + out_audio + text_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": out_audio + text_out,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": cached_text + cached_audio,
                "cached_tokens_details": {"text_tokens": cached_text, "audio_tokens": cached_audio, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": out_audio},
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
        ids = {"response_id": rid, "item_id": item_id, "output_index": index, "call_id": call_id}
        await self.emit({"type": "response.function_call_arguments.delta", **ids, "delta": args})
        await self.emit({"type": "response.function_call_arguments.done", **ids, "name": name, "arguments": args})
        done = {**item, "status": "completed", "arguments": args}
        self.items[item_id] = done
        await self.emit({"type": "response.output_item.done", "response_id": rid, "output_index": index, "item": done})
        await self.emit({"type": "conversation.item.done", "previous_item_id": None, "item": done})
        return done

    async def _audio_reply(self, rid: str, reply: Reply, output: list[dict[str, Any]], *, cut: bool = False) -> int:
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
        part = {"type": "audio", "transcript": ""}
        await self.emit({"type": "response.content_part.added", **ids, "content_index": 0, "part": part})
        pcm = reply.pcm()
        if cut:  # max_output_tokens / content_filter: the reply stops half-way
            pcm = pcm[: len(pcm) // 2 // 2 * 2]
        step = DELTA_MS * BYTES_PER_MS
        words = reply.say.split(" ")
        per_chunk = max(1, len(words) * step // max(1, len(pcm)) + 1)
        said: list[str] = []
        try:
            for n, off in enumerate(range(0, len(pcm), step)):
                chunk = pcm[off : off + step]
                if len(said) < len(words):
                    text = words[len(said) : len(said) + per_chunk]
                    said += text
                    await self.emit({"type": "response.output_audio_transcript.delta", **ids, "content_index": 0,
                                     "delta": " ".join(text) + " "})  # fmt: skip
                delta = base64.b64encode(chunk).decode("ascii")
                await self.emit({"type": "response.output_audio.delta", **ids, "content_index": 0, "delta": delta})
                if item_id not in self.truncated:  # a truncation is final: the tail does not grow it back
                    self.audio_ms[item_id] += len(chunk) // BYTES_PER_MS
                self.deltas_sent += 1
                await self._faults_mid_reply(n)
                await asyncio.sleep(len(chunk) / BYTES_PER_MS / 1000 / self.opts.stream_speed)
        except asyncio.CancelledError:
            # The cancelled response still closes its item: done events with what was said.
            with contextlib.suppress(ConnectionClosed):
                output.append(await self._item_done(ids, item, " ".join(said), "incomplete"))
            raise
        transcript = reply.say if not cut else " ".join(said)
        output.append(await self._item_done(ids, item, transcript, "incomplete" if cut else "completed"))
        return len(pcm) // BYTES_PER_MS

    async def _faults_mid_reply(self, n: int) -> None:
        faults = self.opts.faults
        if n == 1 and faults.inject_mid_reply:
            frames, faults.inject_mid_reply = faults.inject_mid_reply, []
            for raw in frames:
                await self.ws.send(raw)
        drop = faults.drop_after_deltas
        if drop is not None and self.deltas_sent >= drop:
            faults.drop_after_deltas = None
            self.ws.transport.abort()
            raise asyncio.CancelledError
        reset = faults.reset_after_deltas
        if reset is not None and self.deltas_sent >= reset:
            faults.reset_after_deltas = None
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            sock = self.ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.ws.transport.abort()
            raise asyncio.CancelledError

    async def _item_done(
        self, ids: dict[str, Any], item: dict[str, Any], transcript: str, status: str
    ) -> dict[str, Any]:
        await self.emit({"type": "response.output_audio.done", **ids, "content_index": 0})
        await self.emit(
            {"type": "response.output_audio_transcript.done", **ids, "content_index": 0, "transcript": transcript}
        )
        part = {"type": "audio", "transcript": transcript}
        await self.emit({"type": "response.content_part.done", **ids, "content_index": 0, "part": part})
        done = {**item, "status": status, "content": [{"type": "output_audio", "transcript": transcript}]}
        self.items[item["id"]] = done
        await self.emit({"type": "response.output_item.done", "response_id": ids["response_id"], "output_index": 0,
                         "item": done})  # fmt: skip
        await self.emit({"type": "conversation.item.done", "previous_item_id": None, "item": done})
        return done


def merge_update(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Apply a ``session.update`` the way the service does: nested objects merge, values replace."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge_update(into[k], v)
        else:
            into[k] = v


def _fill(template: str, values: dict[str, Any]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values.get(m.group(1), m.group(0))), template)
