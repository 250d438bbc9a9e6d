"""Pure PCM helpers: PCM16 little-endian mono unless a name says otherwise."""

from __future__ import annotations

import wave
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 24000  # the Realtime API's only PCM rate
SAMPLE_BYTES = 2
BYTES_PER_MS = RATE * SAMPLE_BYTES // 1000  # 48

Int16Array = npt.NDArray[np.int16]


def ms_to_bytes(ms: float, rate: int = RATE) -> int:
    """Bytes of mono PCM16 for ``ms`` milliseconds, rounded down to whole samples."""
    return int(ms * rate / 1000) * SAMPLE_BYTES


def bytes_to_ms(n: int, rate: int = RATE) -> float:
    """Milliseconds of mono PCM16 in ``n`` bytes."""
    return n / SAMPLE_BYTES * 1000 / rate


def silence(ms: float, rate: int = RATE) -> bytes:
    """``ms`` of digital silence."""
    return bytes(ms_to_bytes(ms, rate))


def as_array(pcm: bytes) -> Int16Array:
    """A read-only int16 view of PCM bytes (no copy)."""
    return np.frombuffer(pcm, dtype="<i2")


def rms_dbfs(pcm: bytes) -> float:
    """Level of a chunk in dBFS (-inf..0); silence gives -120."""
    if len(pcm) < SAMPLE_BYTES:
        return -120.0
    x = as_array(pcm[: len(pcm) - len(pcm) % SAMPLE_BYTES]).astype(np.float32)
    power = float(np.mean(x * x))
    if power <= 0.0:
        return -120.0
    return 10.0 * float(np.log10(power / (32768.0 * 32768.0)))


def apply_gain(pcm: bytes, gain_db: float) -> bytes:
    """Scale by ``gain_db`` with clipping; 0 dB returns the input unchanged."""
    if gain_db == 0.0:
        return pcm
    x = as_array(pcm).astype(np.float32) * (10.0 ** (gain_db / 20.0))
    out: bytes = np.clip(x, -32768, 32767).astype("<i2").tobytes()
    return out


def fade_out(pcm: bytes) -> bytes:
    """A linear fade from full level to silence over the whole of ``pcm`` (anti-click)."""
    x = as_array(pcm).astype(np.float32)
    if x.size == 0:
        return pcm
    ramp = np.linspace(1.0, 0.0, x.size, dtype=np.float32)
    return (x * ramp).astype("<i2").tobytes()


def chunks(pcm: bytes, size: int) -> list[bytes]:
    """Split into ``size``-byte chunks; the last one is padded with silence."""
    out = [pcm[i : i + size] for i in range(0, len(pcm), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + bytes(size - len(out[-1]))
    return out


def read_wav(path: Path | Traversable, expect_rate: int = RATE) -> bytes:
    """Read a mono PCM16 WAV at ``expect_rate``; ValueError naming what differs otherwise.

    ``path`` may be packaged data (``importlib.resources``), not only a file on disk.
    """
    with path.open("rb") as f, wave.open(f, "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != SAMPLE_BYTES or w.getframerate() != expect_rate:
            raise ValueError(
                f"{path}: need mono 16-bit {expect_rate} Hz, got {w.getnchannels()} ch "
                f"{8 * w.getsampwidth()}-bit {w.getframerate()} Hz"
            )
        return w.readframes(w.getnframes())


def write_wav(path: Path, pcm: bytes, rate: int = RATE) -> None:
    """Write mono PCM16 as a WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(SAMPLE_BYTES)
        w.setframerate(rate)
        w.writeframes(pcm)
