"""Simulator scenarios: data files saying what the assistant answers to each visitor turn.

A scenario (JSON, packaged data in ``kiosk/sim/scenarios/``, read through
``importlib.resources``; or any file given by path)::

    {"name": "happy_path", "description": "...",
     "greeting": {"say": "Hi! ...", "audio": "audio/a_greeting.wav"},
     "turns": [
       {"visitor": "what the visitor says", "visitor_audio": "audio/v_01.wav",
        "tools": [{"name": "analyzeDeal", "arguments": {...}}],
        "reply": {"say": "...", "audio": "audio/a_01.wav"}}],
     "fallback": {"say": "Sorry, could you say that again?"},
     "idle": {"say": "Are you still there?"},
     "goodbye": {"say": "Thanks for stopping by. Goodbye!"},
     "expect": {"lead_saved": true}}

The visitor side (the demo's scripted visitor) reads the same file. Tool arguments may
contain ``{{key}}``, replaced by the value of ``key`` in an earlier tool output (for
example ``{{leadId}}`` from saveLead). Replies without ``audio`` are synthesized.

What the scripted visitor does, and the world around the kiosk, are data too:

* a turn's ``"barge_in_ms": N`` makes the visitor speak N ms (audio time) after the
  assistant's previous reply started playing, instead of waiting for it to finish;
* ``"visitor": {"leaves": "press"}`` (the default) ends with a press of the button;
  ``"silence"`` walks away: the visitor says nothing more until the kiosk ends the session;
* ``"faults"`` are :class:`kiosk.sim.options.Faults` fields set from the start (e.g.
  ``{"http_status": 503}``: the service is unreachable); with ``"network_returns": true``
  they are cleared once the offline message has played, and the visitor presses again;
* ``"service"`` are :class:`kiosk.sim.options.Habits` fields: the real service's unkind
  habits (late transcripts, audio in flight after a barge-in, cached tokens, ...);
* ``"overrides"`` are settings sections merged over the configuration (short time-outs);
* ``"setup": {"spent_today_usd": X}`` records X dollars of earlier usage today;
* ``"expect"`` says what must hold afterwards (keys in :data:`EXPECT_KEYS`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

from kiosk.audio.pcm import RATE, read_wav

# Packaged data, not a path next to this file: the package may not be plain files on disk.
SCENARIOS: Traversable = files("kiosk.sim") / "scenarios"

# What a scenario may expect; the demo checks each one that is present.
EXPECT_KEYS = {
    "greeted": "the assistant spoke first after the press (bool)",
    "lead_saved": "a lead (with consent evidence and outbox row) was stored (bool)",
    "consent_status": "the consent status of every lead saved: 'verified', 'unverified' or 'revoked'",
    "tool_calls": "exact number of runs per tool name, e.g. {\"saveLead\": 1}",
    "end_reason": "why the last visit ended (an EndReason value)",
    "end_reasons": "why each visit ended, in order (EndReason values)",
    "lights": "light patterns that must have been shown (Pattern values)",
    "final_state": "the kiosk state once the visitor is done (a State value)",
    "played": "local prerecorded messages the speaker played: 'offline', 'unavailable'",
    "truncated": "a barge-in truncated the assistant's audio and the server accepted it (bool)",
    "assistant_said": "scenario replies the assistant said: 'greeting', 'idle', 'goodbye', 'fallback'",
    "visitor_sessions": "number of visits the kiosk started (int)",
}
SETUP_KEYS = ("spent_today_usd",)
LEAVES = ("press", "silence")


@dataclass(frozen=True)
class Reply:
    """What the assistant says: text, and audio (a WAV, or synthesized from the text)."""

    say: str
    audio: Traversable | None = None

    def pcm(self) -> bytes:
        """The reply's PCM16 24 kHz audio."""
        return _wav(self.audio) if self.audio is not None else synthesize(self.say)


@dataclass(frozen=True)
class ToolSpec:
    """A function call the assistant makes."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Turn:
    """One visitor turn and the assistant's answer to it."""

    visitor: str
    visitor_audio: Traversable | None = None
    tools: tuple[ToolSpec, ...] = ()
    reply: Reply | None = None
    pause_ms: int = 400
    barge_in_ms: int | None = None  # speak this long into the previous reply instead of after it


@dataclass(frozen=True)
class Scenario:
    """A whole scripted conversation."""

    name: str
    description: str = ""
    greeting: Reply = Reply("Hi! I'm the kiosk assistant. How can I help you today?")
    turns: tuple[Turn, ...] = ()
    fallback: Reply = Reply("Sorry, I didn't catch that. Could you say it again?")
    idle: Reply = Reply("Are you still there?")
    goodbye: Reply = Reply("Thanks for stopping by. Goodbye!")
    expect: dict[str, Any] = field(default_factory=dict)
    visitor: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)
    service: dict[str, Any] = field(default_factory=dict)
    network_returns: bool = False
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)

    @property
    def leaves(self) -> str:
        """How the visitor leaves after the last turn: ``press`` or ``silence``."""
        return str(self.visitor.get("leaves", "press"))


def _reply(data: Any, base: Traversable, default: Reply | None = None) -> Reply | None:
    if data is None:
        return default
    if not isinstance(data, dict) or not isinstance(data.get("say"), str):
        raise ValueError(f"a reply needs a 'say' string, got {data!r}")
    audio = data.get("audio")
    return Reply(data["say"], base / audio if isinstance(audio, str) else None)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by name (from the package) or by path; ValueError when malformed.

    Audio files are relative to the scenario file.
    """
    given = Path(name_or_path)
    path: Traversable
    base: Traversable
    if given.suffix:
        path, base, stem = given, given.parent, given.stem
    else:
        path, base, stem = SCENARIOS / f"{name_or_path}.json", SCENARIOS, str(name_or_path)
    if not path.is_file():
        raise ValueError(f"no scenario {name_or_path!r} (known: {', '.join(scenario_names())})")
    data = json.loads(path.read_text(encoding="utf-8"))
    defaults = Scenario(name=stem)
    turns = []
    for i, t in enumerate(data.get("turns", [])):
        if not isinstance(t, dict) or not isinstance(t.get("visitor"), str):
            raise ValueError(f"{path}: turn {i} needs a 'visitor' string")
        tools = tuple(ToolSpec(str(c["name"]), dict(c.get("arguments", {}))) for c in t.get("tools", []))
        va = t.get("visitor_audio")
        barge = t.get("barge_in_ms")
        turns.append(
            Turn(
                t["visitor"],
                base / va if isinstance(va, str) else None,
                tools,
                _reply(t.get("reply"), base),
                int(t.get("pause_ms", 400)),
                None if barge is None else int(barge),
            )
        )
    _check_sections(path, data)
    return Scenario(
        name=str(data.get("name", stem)),
        description=str(data.get("description", "")),
        greeting=_reply(data.get("greeting"), base, defaults.greeting) or defaults.greeting,
        turns=tuple(turns),
        fallback=_reply(data.get("fallback"), base, defaults.fallback) or defaults.fallback,
        idle=_reply(data.get("idle"), base, defaults.idle) or defaults.idle,
        goodbye=_reply(data.get("goodbye"), base, defaults.goodbye) or defaults.goodbye,
        expect=dict(data.get("expect", {})),
        visitor=dict(data.get("visitor", {})),
        faults=dict(data.get("faults", {})),
        service=dict(data.get("service", {})),
        network_returns=bool(data.get("network_returns", False)),
        overrides={str(k): dict(v) for k, v in data.get("overrides", {}).items()},
        setup=dict(data.get("setup", {})),
    )


def _check_sections(path: Traversable, data: dict[str, Any]) -> None:
    """Typos in what a scenario expects or sets up would silently check nothing: refuse them."""
    for key, known in (("expect", EXPECT_KEYS), ("setup", SETUP_KEYS)):
        section = data.get(key, {})
        if not isinstance(section, dict):
            raise ValueError(f"{path}: '{key}' must be an object")
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ValueError(f"{path}: unknown '{key}' keys {unknown} (known: {', '.join(sorted(known))})")
    overrides = data.get("overrides", {})
    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        raise ValueError(f"{path}: 'overrides' must map settings sections to objects")
    for key in ("faults", "service"):
        if not isinstance(data.get(key, {}), dict):
            raise ValueError(f"{path}: '{key}' must be an object")
    visitor = data.get("visitor", {})
    if not isinstance(visitor, dict):
        raise ValueError(f"{path}: 'visitor' must be an object")
    leaves = visitor.get("leaves", "press")
    if leaves not in LEAVES:
        raise ValueError(f"{path}: visitor.leaves must be one of {LEAVES}, got {leaves!r}")


def scenario_names() -> list[str]:
    """Scenarios shipped with the package."""
    return sorted(p.name.removesuffix(".json") for p in SCENARIOS.iterdir() if p.name.endswith(".json"))


# Keyed by the text of the path: a Traversable need not be hashable (functools.cache).
_WAVS: dict[str, bytes] = {}


def _wav(path: Traversable) -> bytes:
    key = str(path)
    if key not in _WAVS:
        _WAVS[key] = read_wav(path, RATE)
    return _WAVS[key]


@cache
def synthesize(
    text: str, *, pitch_hz: float = 140.0, syllable_hz: float = 4.0, limit_s: float | None = None
) -> bytes:
    """Speech-like audio for ``text``: a voiced buzz at ``pitch_hz`` with syllable-rate modulation.

    About 60 ms per character, which is close to a real voice's pace, so timings and
    truncation in tests resemble a real conversation. The waveform depends only on the
    length of ``text``: a visitor who must not sound like the assistant needs another
    ``pitch_hz`` (an echo canceller rightly takes a copy of what was played for echo).
    ``limit_s``: only the first seconds, the very samples the whole would start with (every
    step is per sample or a running sum), without the whole's float arrays in memory.
    """
    seconds = min(12.0, max(0.4, 0.06 * len(text)))
    if limit_s is not None:
        seconds = min(seconds, limit_s)
    t = np.arange(int(seconds * RATE), dtype=np.float64) / RATE
    f0 = pitch_hz + pitch_hz / 7 * np.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    syllables = 0.55 + 0.45 * np.sin(2 * math.pi * syllable_hz * t) ** 2
    signal = 0.25 * voice * syllables / 1.5
    pcm: bytes = (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()  # typed: Any under numpy 1.26's stubs
    return pcm
