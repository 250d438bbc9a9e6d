"""Barge-in policy when the speaker and the microphone share a room.

``aec``: the echo is cancelled in the microphone's conditioning (:mod:`kiosk.audio.aec`,
built here by :func:`echo_stage`); what reaches this policy is clean, so every chunk goes up.
``hardware``: the array cancels echo itself; every chunk goes up.
``half_duplex``: nothing goes up while the assistant speaks (no barge-in possible).
``gate``: while the assistant speaks, a chunk goes up only when it is louder than the
audio being played by ``margin_db`` (the echo of the speaker arrives attenuated; a
visitor speaking close to the array is louder than that), and never during a short
warm-up after playback starts, when the level estimate is not settled yet. Gated chunks
become silence rather than gaps, so the server's audio clock stays continuous. In a
reverberant room the gate lets through what a quiet visitor says only in the assistant's
pauses: it is the fallback, not the default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kiosk.audio.pcm import rms_dbfs
from kiosk.config import EchoSettings

if TYPE_CHECKING:
    from kiosk.audio.aec import EchoStage

log = logging.getLogger(__name__)

HOLD_S = 0.15  # the played level is remembered this long (the room's echo tail)


def echo_stage(settings: EchoSettings) -> EchoStage | None:
    """The echo canceller stage for ``mode = "aec"`` (None for the other modes).

    A canceller that cannot be loaded (no ``pywebrtc-audio`` wheel on this machine) is
    logged as an error and None is returned: the caller falls back to ``gate``.
    """
    if settings.mode != "aec":
        return None
    from kiosk.audio.aec import EchoStage
    from kiosk.audio.guard import ResidualGuard

    try:
        from kiosk.audio.webrtc_aec import WebRtcCanceller

        canceller = WebRtcCanceller(delay_hint_ms=round(settings.lead_ms))
    except (ImportError, OSError) as exc:
        log.error(
            "echo canceller unavailable (%s): falling back to the level gate",
            exc,
            extra={"kiosk": {"event": "echo_fallback", "error": str(exc)}},
        )
        return None
    guard = ResidualGuard(cap_db=settings.residual_cap_db, hold_ms=settings.residual_hold_ms)
    log.info("echo cancellation on: WebRTC AEC3 at 16 kHz, the played audio as reference")
    return EchoStage(canceller, lead_ms=settings.lead_ms, guard=guard, quiet_after_s=settings.quiet_after_s)


@dataclass
class EchoPolicy:
    """Decides per microphone chunk whether it goes to the server."""

    mode: str = "gate"
    margin_db: float = 0.0
    warmup_s: float = 0.3
    _playing_since: float | None = None
    _ref_db: float = -120.0
    _ref_at: float = -1e9
    gated_chunks: int = 0

    @property
    def uses_level(self) -> bool:
        """True when :meth:`reference` matters: the gate and half duplex hold their decisions
        by it; the other modes pass every chunk (and the speaker's level need not be worked out)."""
        return self.mode in ("gate", "half_duplex")

    def playback(self, playing: bool, now: float) -> None:
        """The speaker started or stopped being audible."""
        self._playing_since = now if playing else None

    def reference(self, level_dbfs: float, now: float) -> None:
        """The level of audio just handed to the speaker."""
        if level_dbfs >= self._ref_db or now - self._ref_at > HOLD_S:
            self._ref_db, self._ref_at = level_dbfs, now

    def filter(self, chunk: bytes, now: float) -> bytes:
        """The chunk to send: itself, or silence of the same length."""
        if self.mode in ("hardware", "aec") or (self._playing_since is None and now - self._ref_at > HOLD_S):
            return chunk
        if self.mode == "half_duplex":
            return self._gate(chunk)
        if self._playing_since is not None and now - self._playing_since < self.warmup_s:
            return self._gate(chunk)
        if rms_dbfs(chunk) > self._ref_db + self.margin_db:
            return chunk
        return self._gate(chunk)

    def _gate(self, chunk: bytes) -> bytes:
        self.gated_chunks += 1
        return bytes(len(chunk))
