"""The benchmark's voices: marked assistant replies and a loud visitor utterance."""

from __future__ import annotations

import numpy as np

from kiosk.audio.pcm import RATE
from kiosk.bench.probe import mark_reply
from kiosk.sim.scenario import synthesize

_SENTENCE = "Investment property loans are underwritten on the rent the property earns, not only your income."


def speech(seconds: float, gain: float = 1.0, *, pitch_hz: float = 140.0) -> bytes:
    """``seconds`` of speech-like audio (the simulator's synthesized voice at ``pitch_hz``, repeated)."""
    # Only the seconds wanted are synthesized: the kiosk process of the memory benchmark makes
    # the visitor's voice, and the whole sentence's float arrays would be its peak, not the kiosk's.
    pcm = synthesize(_SENTENCE, pitch_hz=pitch_hz, syllable_hz=4.0 * pitch_hz / 140.0, limit_s=seconds)
    base = np.frombuffer(pcm, dtype="<i2")
    n = int(seconds * RATE)
    x = np.tile(base, n // len(base) + 1)[:n].astype(np.float64) * gain
    return np.clip(x, -32767, 32766).astype("<i2").tobytes()


def assistant_reply(seconds: float, reply: int) -> bytes:
    """An assistant reply whose every 100 ms delta carries a (reply, delta) marker."""
    return mark_reply(speech(seconds), reply)


def visitor_utterance(seconds: float = 0.45) -> bytes:
    """A visitor close to the microphone: well above the played level, so the echo gate lets it through.

    Another voice than the assistant's: a visitor saying the very samples the speaker
    played a moment ago is an echo to any canceller, and rightly removed.
    """
    return speech(seconds, gain=2.5, pitch_hz=210.0)
