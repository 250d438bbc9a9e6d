"""PyAudio (PortAudio) adapters for the real microphone and speaker.

Devices are found by a name substring (stable across reboots, unlike indexes), opened at
24 kHz when they accept it and otherwise at their native rate, and resampled in-process
with soxr's streaming resampler. PortAudio callbacks run on PortAudio's thread: they only
copy bytes and hand them to the event loop (capture) or pull a period from the thread-safe
jitter buffer (playback). Input and output are separate streams.

Each block is stamped for the echo canceller: PortAudio says how long ago the block left
the ADC (``current_time - input_buffer_adc_time``) or how soon it reaches the DAC
(``output_buffer_dac_time - current_time``); added to the monotonic clock read in the
callback, both streams' times share one clock whatever clock the host API uses. Where the
host API gives no times (0), the stream's reported latency stands in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import pyaudio

from kiosk.audio.capture import CaptureChunker, Gather
from kiosk.audio.pcm import RATE
from kiosk.audio.playback import PlaybackBuffer
from kiosk.audio.ports import EchoRemover, PlayingListener, ReferenceSink
from kiosk.audio.resample import Resampler
from kiosk.config import AudioSettings
from kiosk.errors import DeviceError

log = logging.getLogger(__name__)

CANDIDATE_RATES = (24000, 48000, 16000, 44100, 32000, 22050, 8000)


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device as ``kiosk devices`` shows it."""

    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_rate: int
    input_rates: tuple[int, ...]
    output_rates: tuple[int, ...]


def list_devices(pa: Any) -> list[DeviceInfo]:
    """All devices with the rates each accepts (of the common ones)."""
    out = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        ins, outs = int(info["maxInputChannels"]), int(info["maxOutputChannels"])
        out.append(
            DeviceInfo(
                i,
                str(info["name"]),
                ins,
                outs,
                int(info["defaultSampleRate"]),
                tuple(r for r in CANDIDATE_RATES if ins and _supported(pa, r, i, ins, True)),
                tuple(r for r in CANDIDATE_RATES if outs and _supported(pa, r, i, min(outs, 2), False)),
            )
        )
    return out


def _supported(pa: Any, rate: int, index: int, channels: int, is_input: bool) -> bool:
    try:
        if is_input:
            return bool(
                pa.is_format_supported(rate, input_device=index, input_channels=channels, input_format=pyaudio.paInt16)
            )
        return bool(
            pa.is_format_supported(rate, output_device=index, output_channels=channels, output_format=pyaudio.paInt16)
        )
    except ValueError:
        return False


def find_device(pa: Any, name: str, index: int | None, is_input: bool) -> DeviceInfo:
    """The device whose name contains ``name`` (case-insensitive), else ``index``, else the default."""
    devices = [d for d in list_devices(pa) if (d.max_input_channels if is_input else d.max_output_channels) > 0]
    kind = "microphone" if is_input else "speaker"
    if name:
        for d in devices:
            if name.lower() in d.name.lower():
                return d
    if index is not None:
        for d in devices:
            if d.index == index:
                return d
    if not name and index is None:
        try:
            info = pa.get_default_input_device_info() if is_input else pa.get_default_output_device_info()
        except OSError:
            info = None
        if info is not None:
            for d in devices:
                if d.index == int(info["index"]):
                    return d
    names = ", ".join(repr(d.name) for d in devices) or "none"
    if name:
        wanted = f"whose name contains {name!r}"
    elif index is not None:
        wanted = f"at index {index}"
    else:
        wanted = "(no system default)"
    raise DeviceError(f"no {kind} {wanted}; available: {names}")


def pick_rate(device: DeviceInfo, is_input: bool, forced: int = 0) -> int:
    """``forced`` if set, else 24 kHz when the device takes it, else its default rate."""
    if forced:
        return forced
    rates = device.input_rates if is_input else device.output_rates
    if RATE in rates:
        return RATE
    if device.default_rate in rates or not rates:
        return device.default_rate
    return rates[0]


class PyAudioMicrophone:
    """Capture from a PortAudio device into 24 kHz mono chunks of ``chunk_ms``."""

    def __init__(
        self,
        pa: Any,
        device: DeviceInfo,
        *,
        chunk_ms: int = 40,
        channel: int = 0,
        downmix: bool = False,
        gain_db: float = 0.0,
        queue_chunks: int = 50,
        rate: int = 0,
        period_ms: int = 10,
    ) -> None:
        if channel >= device.max_input_channels:
            raise DeviceError(f"mic_channel {channel} but {device.name!r} has {device.max_input_channels} channels")
        self.chunk_ms = chunk_ms
        self.device = device
        self.rate = pick_rate(device, True, rate)
        self.channels = device.max_input_channels if downmix else channel + 1
        self.chunker = CaptureChunker(
            self.rate,
            self.channels,
            chunk_ms=chunk_ms,
            channel=channel,
            downmix=downmix,
            gain_db=gain_db,
            queue_chunks=queue_chunks,
        )
        self._pa = pa
        self._frames = max(1, self.rate * period_ms // 1000)
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gather = Gather(self.rate, self.channels, chunk_ms, self._deliver)
        self._latency_s = 0.0  # the stream's reported input latency (when PortAudio gives no times)
        self.callbacks = 0  # progress counter for the watchdog

    @classmethod
    def configured(cls, pa: Any, device: DeviceInfo, a: AudioSettings) -> PyAudioMicrophone:
        """The microphone as ``[audio]`` configures it (the daemon and the self-test alike)."""
        return cls(
            pa,
            device,
            chunk_ms=a.chunk_ms,
            channel=a.mic_channel,
            downmix=a.downmix,
            gain_db=a.input_gain_db,
            queue_chunks=a.capture_queue_chunks,
            rate=a.input_rate,
            period_ms=a.input_period_ms or a.period_ms,
        )

    @property
    def overflows(self) -> int:
        """Chunks dropped because the consumer fell behind."""
        return self.chunker.overflows

    def cancel_echo(self, remover: EchoRemover) -> None:
        """Run every block through ``remover`` (see ``kiosk.audio.capture``)."""
        self.chunker.cancel_echo(remover)

    async def start(self) -> None:
        """Open the input stream."""
        self._loop = asyncio.get_running_loop()
        try:
            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                channels=self.channels,
                rate=self.rate,
                input=True,
                input_device_index=self.device.index,
                frames_per_buffer=self._frames,
                stream_callback=self._callback,
            )
        except (OSError, ValueError) as exc:
            raise DeviceError(f"cannot open microphone {self.device.name!r} at {self.rate} Hz: {exc}") from None
        self._latency_s = float(self._stream.get_input_latency())
        log.info(
            "microphone %r open at %d Hz, %d channel(s)",
            self.device.name,
            self.rate,
            self.channels,
            extra={"kiosk": {"event": "mic_open", "device": self.device.name, "rate": self.rate}},
        )

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[None, int]:
        # PortAudio thread: gather the bytes (and when they left the ADC), return at once; a
        # period that completes a chunk goes to the loop.
        self.callbacks += 1
        if in_data is not None and self._loop is not None:
            ago = float(time_info.get("current_time", 0.0)) - float(time_info.get("input_buffer_adc_time", 0.0))
            adc_time = time.monotonic() - (ago if 0.0 < ago < 1.0 else self._latency_s)
            self._gather.add(in_data, adc_time)
        return None, pyaudio.paContinue

    def _deliver(self, block: bytes, adc_time: float | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.chunker.feed, block, adc_time)

    async def read(self) -> bytes:
        """The next 24 kHz chunk."""
        return await self.chunker.queue.get()

    async def close(self) -> None:
        """Stop and close the stream."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await asyncio.to_thread(_stop, stream)


def _stop(stream: Any) -> None:
    # Off the loop: stopping waits for PortAudio's thread, which may be inside a callback
    # that is waiting for the loop.
    try:
        stream.stop_stream()
        stream.close()
    except OSError as exc:  # a device unplugged mid-stream
        log.warning("closing an audio stream failed: %s", exc)


class PyAudioSpeaker:
    """Play 24 kHz audio through a PortAudio device (resampled to its rate if needed)."""

    def __init__(
        self, pa: Any, device: DeviceInfo, *, prebuffer_ms: int = 60, period_ms: int = 10, rate: int = 0
    ) -> None:
        self.device = device
        self.rate = pick_rate(device, False, rate)
        self.buffer = PlaybackBuffer(prebuffer_ms, rate=self.rate)
        self.period_ms = period_ms
        self._pa = pa
        self._frames = max(1, self.rate * period_ms // 1000)
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: PlayingListener = lambda playing: None
        self._playing = False
        self._resample = Resampler(RATE, self.rate)
        self.latency_ms = 0.0
        self.callbacks = 0  # progress counter for the watchdog
        self._taps: list[ReferenceSink] = []

    def tap(self, sink: ReferenceSink) -> None:
        """Report every period handed to the device, with its DAC time, to ``sink`` (device thread)."""
        self._taps.append(sink)

    @classmethod
    def configured(cls, pa: Any, device: DeviceInfo, a: AudioSettings) -> PyAudioSpeaker:
        """The speaker as ``[audio]`` configures it (the daemon and the self-test alike)."""
        return cls(pa, device, prebuffer_ms=a.prebuffer_ms, period_ms=a.period_ms, rate=a.output_rate)

    async def start(self, on_playing: PlayingListener) -> None:
        """Open the output stream."""
        self._loop = asyncio.get_running_loop()
        self._listener = on_playing
        try:
            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                channels=1,
                rate=self.rate,
                output=True,
                output_device_index=self.device.index,
                frames_per_buffer=self._frames,
                stream_callback=self._callback,
            )
        except (OSError, ValueError) as exc:
            raise DeviceError(f"cannot open speaker {self.device.name!r} at {self.rate} Hz: {exc}") from None
        # What the device holds between consuming a frame and sounding it: subtracted from
        # consumption to get what the visitor has heard.
        self.latency_ms = float(self._stream.get_output_latency()) * 1000
        log.info(
            "speaker %r open at %d Hz (latency %.0f ms)",
            self.device.name,
            self.rate,
            self.latency_ms,
            extra={"kiosk": {"event": "speaker_open", "device": self.device.name, "rate": self.rate}},
        )

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[bytes, int]:
        # PortAudio thread: take one period from the jitter buffer.
        self.callbacks += 1
        # Where the host API knows when this buffer reaches the DAC (real ALSA hardware),
        # that is the latency; otherwise keep PortAudio's reported stream latency.
        ahead = float(time_info.get("output_buffer_dac_time", 0.0)) - float(time_info.get("current_time", 0.0))
        if 0.0 < ahead < 1.0:
            self.latency_ms = ahead * 1000
        data, audible = self.buffer.read(frame_count * 2)
        for sink in self._taps:
            sink(data, self.rate, time.monotonic() + self.latency_ms / 1000)
        if audible != self._playing and self._loop is not None:
            self._playing = audible
            self._loop.call_soon_threadsafe(self._listener, audible)
        return data, pyaudio.paContinue

    def write(self, pcm: bytes, tag: str) -> None:
        """Queue 24 kHz audio (resampled to the device rate here, on the loop)."""
        self.buffer.write(self._resample(pcm), tag)

    def end_of_stream(self) -> None:
        """Play out what is queued, including the resampler's tail."""
        tail = self._resample.drain()
        if tail:
            self.buffer.write(tail, self.buffer.last_tag or "tail")
        self.buffer.end_of_stream()

    def flush(self) -> dict[str, float]:
        """Barge-in: drop queued audio; report what was heard (device latency subtracted)."""
        self._resample.reset()
        return {tag: max(0.0, ms - self.latency_ms) for tag, ms in self.buffer.flush().items()}

    def played_ms(self, tag: str) -> float:
        """What the visitor has heard of ``tag``: consumed by the device minus its latency."""
        return max(0.0, self.buffer.played_ms(tag) - self.latency_ms)

    def level_dbfs(self) -> float:
        """Level of the last period played."""
        return self.buffer.level_dbfs

    def forget(self) -> None:
        """Drop per-item counters."""
        self.buffer.forget()

    async def close(self) -> None:
        """Stop and close the stream."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await asyncio.to_thread(_stop, stream)
