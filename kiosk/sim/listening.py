"""How the simulator listens: server VAD over appended audio, committed turns, their transcription,
and the idle time-out.

Like the service, input transcription runs beside the response, not before it: with
``Habits.transcript_delay_ms`` the ``...transcription.completed`` of a turn arrives that long
after the response to it started (as deltas first with ``Habits.transcript_deltas``); a
turn listed in ``Faults.fail_transcription_turns`` gets ``...transcription.failed``. The
idle time-out commits the silence (``committed`` and an empty user item) before the
model's check-in, as the service does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

from websockets.exceptions import ConnectionClosed

from kiosk.sim.options import sim_id
from kiosk.sim.scenario import Turn
from kiosk.sim.streaming import Responder

# Transcription models billed by audio duration (the rest by tokens).
DURATION_BILLED = frozenset({"whisper-1", "gpt-transcribe", "gpt-live-transcribe", "gpt-realtime-whisper"})


class Listener(Responder):
    """The visitor side of a simulated session (the base of :class:`~kiosk.sim.session.SimSession`)."""

    turn_index: int
    buffer_item: str | None
    background: set[asyncio.Task[None]]

    async def error(
        self, code: str, message: str, param: str | None = None, client_event_id: str | None = None
    ) -> None:
        """Send an ``error`` event (the session implements it)."""
        raise NotImplementedError

    def turn_detection(self) -> dict[str, Any]:
        """The session's turn detection settings (empty when turned off)."""
        td = (self.session.get("audio") or {}).get("input", {}).get("turn_detection")
        return td if isinstance(td, dict) else {}

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
                await self.emit({"type": "input_audio_buffer.speech_started", "audio_start_ms": vev.at_ms,
                                 "item_id": self.buffer_item})  # fmt: skip
                if td.get("interrupt_response", True) and self.active is not None:
                    await self.cancel_active("turn_detected", self.opts.habits.cancel_tail_ms / 1000)
            else:
                await self.speech_stopped(vev.at_ms, td)
        await self.check_idle(td)

    async def commit(self, item_id: str) -> None:
        """Commit the input buffer as a user item (``committed``, then the item)."""
        committed = {"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": self.last_item}
        await self.emit(committed)
        await self.add_item({
            "id": item_id, "type": "message", "role": "user", "status": "completed", "object": "realtime.item",
            "content": [{"type": "input_audio", "transcript": None}],
        })  # fmt: skip

    async def speech_stopped(self, at_ms: int, td: dict[str, Any]) -> None:
        """End of a visitor turn: commit it, transcribe it from the scenario, answer."""
        item_id = self.buffer_item or sim_id("item")
        self.buffer_item = None
        await self.emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": at_ms, "item_id": item_id})
        await self.commit(item_id)
        index = self.turn_index
        turn = self.scenario.turns[index] if index < len(self.scenario.turns) else None
        self.turn_index += 1
        text = turn.visitor if turn else "(unscripted speech)"
        seconds = max(1, at_ms // 1000)
        failed = index in self.opts.faults.fail_transcription_turns
        delay = self.opts.habits.transcript_delay_ms / 1000
        if delay <= 0:
            await self.transcribe(item_id, text, seconds, failed)
        if td.get("create_response", True):
            await self.start_response(turn)
        if delay > 0:
            self._later(delay, self.transcribe(item_id, text, seconds, failed))

    def _later(self, delay_s: float, job: Any) -> None:
        async def run() -> None:
            await asyncio.sleep(delay_s)
            with contextlib.suppress(ConnectionClosed):
                await job

        task = asyncio.get_running_loop().create_task(run())
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def transcribe(self, item_id: str, text: str, seconds: int, failed: bool) -> None:
        """The transcription of a committed item: deltas (if the habit is on), then completed or failed."""
        ids = {"item_id": item_id, "content_index": 0}
        if failed:
            error = {"type": "server_error", "code": "transcription_failed", "message": "Transcription failed.",
                     "param": None}  # fmt: skip
            await self.emit({"type": "conversation.item.input_audio_transcription.failed", **ids, "error": error})
            return
        if self.opts.habits.transcript_deltas and text:
            for word in text.split(" "):
                delta = {"type": "conversation.item.input_audio_transcription.delta", **ids, "delta": word + " "}
                await self.emit(delta)
        await self.emit({"type": "conversation.item.input_audio_transcription.completed", **ids, "transcript": text,
                         "usage": self._transcription_usage(text, seconds)})  # fmt: skip

    def _transcription_usage(self, text: str, seconds: int) -> dict[str, Any]:
        model = ((self.session.get("audio") or {}).get("input", {}).get("transcription") or {}).get("model")
        if model in DURATION_BILLED:
            return {"type": "duration", "seconds": float(seconds)}
        audio, out = seconds * 10, max(1, len(text) // 4)
        return {"type": "tokens", "input_tokens": audio, "output_tokens": out, "total_tokens": audio + out,
                "input_token_details": {"audio_tokens": audio, "text_tokens": 0}}  # fmt: skip

    async def check_idle(self, td: dict[str, Any]) -> None:
        """``idle_timeout_ms``: silence (in audio time) after the assistant finished; the silence is
        committed as a user item, then the model checks in."""
        limit = td.get("idle_timeout_ms")
        if not isinstance(limit, int) or self.idle_from_ms is None or self.vad.speaking or self.active:
            return
        if self.vad.pos_ms - self.idle_from_ms >= limit:
            start, self.idle_from_ms = self.idle_from_ms, None
            item_id = sim_id("item")
            await self.emit({"type": "input_audio_buffer.timeout_triggered", "audio_start_ms": start,
                             "audio_end_ms": self.vad.pos_ms, "item_id": item_id})  # fmt: skip
            await self.commit(item_id)
            await self.transcribe(item_id, "", max(1, (self.vad.pos_ms - start) // 1000), failed=False)
            await self.launch(self.scenario.idle, tools=None)

    def answer_for_retry(self) -> tuple[Any, Turn | None] | None:
        """What a retried response says after a failed one (its reply or tool turn), once."""
        retry, self.retry_with = self.retry_with, None
        return retry
