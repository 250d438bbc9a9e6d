"""How the simulator behaves: the real service's habits, the faults it can inject, and its options.

:class:`Habits` are things the real service does that a kind simulator would not: input
transcripts that arrive after the response, audio that keeps coming after a barge-in,
cached tokens, rate-limit reports, models that have been shut down. The defaults are the
kindest timing the service can show (so most tests stay fast and deterministic); a test
or a scenario (``"service": {...}``) turns each one up.

:class:`Faults` are things that go wrong: refusals, failed responses, transcription
failures, drops, expiry, hostile frames. A scenario sets them with ``"faults": {...}``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from kiosk.sim.scenario import Scenario

# Misbehaving services for reconnect-storm tests (Faults.misbehave).
MISBEHAVIOURS = (
    "expire_at_once",  # session_expired + close 1001 right after session.created
    "expire_when_configured",  # session_expired + close 1001 right after session.updated
    "close_3000",  # close 3000 with a reason naming no known error, right away
    "drop_at_once",  # the TCP connection is cut right after the handshake
    "garbage_then_close",  # hostile frames, then a normal close
    "silent",  # never answers session.update
)


@dataclass
class Habits:
    """The real service's habits (timings, orders, extras), each off or at its kindest by default."""

    transcript_delay_ms: int = 0  # input transcription completes this long (wall time) after the turn's response starts
    transcript_deltas: bool = False  # stream input transcription deltas before .completed
    cancel_tail_ms: int = 0  # after speech_started, the interrupted response streams on this long (in flight)
    rate_limits: bool = False  # rate_limits.updated after each response.created
    cached_fraction: float = 0.0  # share of input tokens reported as cached (text and audio alike)
    retired_models: list[str] = field(default_factory=list)  # refused like models past their shutdown date
    server_audio_short_ms: int = 0  # the server's copy of an item is this much shorter than what it sent


@dataclass
class Faults:
    """Fault injection, set per server (tests flip them between connections)."""

    reject_key: bool = False  # invalid_api_key error, then close 3000 invalid_request_error.invalid_api_key
    reject_with_close_3000: bool = False  # close 3000 invalid_request_error.invalid_api_key, no error event
    close_3000_reason: str | None = None  # right after session.updated: close 3000 with this reason (once)
    expire_after_s: float | None = None  # session_expired error + close 1001 after this long (once)
    drop_after_deltas: int | None = None  # close abruptly after this many audio deltas (once)
    think_ms: int = 0  # fixed "thinking" delay before each response streams
    http_status: int | None = None  # refuse the handshake with this HTTP status
    inject_frames: list[str | bytes] = field(default_factory=list)  # raw frames sent after session.updated (once)
    inject_on_connect: list[str | bytes] = field(default_factory=list)  # after session.created, every connection
    inject_mid_reply: list[str | bytes] = field(default_factory=list)  # after the next reply's 2nd delta (once)
    # response.done outcomes for the next responses, in order: insufficient_quota,
    # inference_rate_limit_exceeded, server_error (status failed), max_output_tokens,
    # content_filter (status incomplete).
    response_failures: list[str] = field(default_factory=list)
    refuse_response_creates: int = 0  # the next N response.create get an error (instructions too long)
    fail_transcription_turns: list[int] = field(default_factory=list)  # scenario turns whose transcription fails
    misbehave: str | None = None  # one of MISBEHAVIOURS, on every connection
    close_after_update: tuple[int, str] | None = None  # right after session.updated: close (code, reason), once
    reset_after_deltas: int | None = None  # a TCP reset (RST, no close frame) after this many audio deltas (once)
    hang_handshake: bool = False  # accept TCP but never answer the HTTP upgrade
    stall_responses: int = 0  # the next N responses send response.created, then nothing ever again


@dataclass
class SimOptions:
    """How the simulator behaves."""

    scenario: Scenario
    stream_speed: float = 8.0  # how much faster than real time replies stream
    faults: Faults = field(default_factory=Faults)
    habits: Habits = field(default_factory=Habits)
    record_sent: bool = False  # keep every emitted server event (conformance tests)


_ids = itertools.count(1)


def sim_id(prefix: str) -> str:
    """A fresh server-side id (``resp_sim000001``), unique in this process."""
    return f"{prefix}_sim{next(_ids):06d}"
