"""The audio ports: what the rest of the kiosk needs from a microphone and a speaker.

Adapters: ``kiosk.audio.files`` (WAV files and scripted speech, for the demo, tests and
benchmarks) and the PyAudio devices. Everything here is PCM16 mono at 24 kHz; adapters
resample from and to their device's native rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

PlayingListener = Callable[[bool], None]
# What a speaker reports for every block it hands to its device (silence included): the
# PCM16 mono samples, their rate, and when the first one reaches the DAC (seconds on the
# clock the microphone's timestamps use; None when the adapter cannot tell).
ReferenceSink = Callable[[bytes, int, float | None], None]


class Recording(Protocol):
    """Prerecorded audio, read when it is played (``kiosk.runtime.compose.WavMessage``)."""

    def pcm(self) -> bytes | None:
        """The audio, or None when it cannot be read now."""


class EchoRemover(Protocol):
    """Takes the played reference and cleans the microphone (``kiosk.audio.aec.EchoStage``)."""

    rate: int  # the rate of what ``captured`` returns

    def played(self, pcm: bytes, rate: int, dac_time: float | None) -> None:
        """A block handed to the speaker (a :data:`ReferenceSink`)."""

    def captured(self, pcm: bytes, rate: int, adc_time: float | None) -> bytes:
        """A microphone block (mono), echo removed, at :attr:`rate`."""


class Microphone(Protocol):
    """A source of visitor audio in fixed-size chunks."""

    chunk_ms: int

    async def start(self) -> None:
        """Open the device and begin capturing."""

    async def read(self) -> bytes:
        """The next chunk (``chunk_ms`` of PCM16 24 kHz mono); waits for it."""

    async def close(self) -> None:
        """Stop capturing and release the device."""

    def cancel_echo(self, remover: EchoRemover) -> None:
        """Run every captured block through ``remover`` (before resampling for the wire)."""


class Speaker(Protocol):
    """A sink for assistant audio with an honest notion of what was played."""

    async def start(self, on_playing: PlayingListener) -> None:
        """Open the device. ``on_playing(True/False)`` is called on the event loop when
        audible playback starts and when the queue has run dry."""

    def write(self, pcm: bytes, tag: str) -> None:
        """Queue audio of assistant item ``tag``; never blocks."""

    def end_of_stream(self) -> None:
        """The current reply's audio is complete: play it out even below the prebuffer."""

    def flush(self) -> dict[str, float]:
        """Silence now (fading <=10 ms); return ms played per item that had audio queued."""

    def played_ms(self, tag: str) -> float:
        """Milliseconds of item ``tag`` the visitor has heard (device consumption - latency)."""

    def level_dbfs(self) -> float:
        """Level of the audio most recently handed to the device (the echo reference)."""

    def forget(self) -> None:
        """Drop per-item bookkeeping at the end of a visit."""

    def tap(self, sink: ReferenceSink) -> None:
        """Report every block handed to the device, with its DAC time, to ``sink``."""

    async def close(self) -> None:
        """Stop and release the device."""
