"""The benchmark's voices: marked assistant replies and a loud visitor utterance."""

from __future__ import annotations

import numpy as np

from kiosk.audio.pcm import RATE
from kiosk.bench.probe import mark_reply
from kiosk.sim.scenario import synthesize

_SENTENCE = "Investment property loans are underwritten on the rent the property earns, not only your income."


def speech(seconds: float, gain: float = 1.0) -> bytes:
    """``seconds`` of speech-like audio (the simulator's synthesized voice, repeated)."""
    base = np.frombuffer(synthesize(_SENTENCE), dtype="<i2")
    n = int(seconds * RATE)
    x = np.tile(base, n // len(base) + 1)[:n].astype(np.float64) * gain
    return np.clip(x, -32767, 32766).astype("<i2").tobytes()


def assistant_reply(seconds: float, reply: int) -> bytes:
    """An assistant reply whose every 100 ms delta carries a (reply, delta) marker."""
    return mark_reply(speech(seconds), reply)


def visitor_utterance(seconds: float = 0.45) -> bytes:
    """A visitor close to the microphone: well above the played level, so the echo gate lets it through."""
    return speech(seconds, gain=2.5)
