"""A virtual sound card for tests: real PortAudio on ALSA devices defined by the test.

``ALSA_CONFIG_PATH`` points at a config of our own (it replaces the system's, so nothing
else is probed): the capture device reads a FIFO the harness feeds, the playback device
writes a FIFO the harness drains. Both FIFOs are opened O_RDWR before PortAudio starts
(PortAudio opens and closes devices while probing) and the harness paces them in real
time, so the devices behave like a clocked sound card. The playback FIFO is shrunk to one
page, and what sits in it counts as having left the device: the pipe is the test's cable
to the loudspeaker, the reader its membrane clock.

With ``loop_db`` the card is a room as well: what the loudspeaker plays comes back into
the microphone ``loop_delay_ms`` later, ``loop_db`` louder or quieter (a plain delayed
copy: enough to see echo cancellation work on real PortAudio timestamps).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from kiosk.config import AudioSettings

F_SETPIPE_SZ = 1031
FIONREAD = 0x541B
MIC_BACKLOG = 8  # 10 ms periods the microphone FIFO may hold before new ones are lost (an overrun)
# The harness writes the microphone FIFO a device period at a time: ALSA's file plugin reads
# a period with one read(), and a FIFO fed in smaller pieces would return short periods (the
# capture would run fast). Tests that configure another microphone period pass it on.
_DEFAULTS = AudioSettings()
DEFAULT_MIC_PERIOD_MS = _DEFAULTS.input_period_ms or _DEFAULTS.period_ms

CONFIG = """
pcm.!default {{ type asym; playback.pcm "vplay"; capture.pcm "vcap" }}
pcm.vplay {{ type file; slave.pcm {{ type null }}; file "{spk}"; format "raw"; perm 0644 }}
pcm.vcap {{ type file; slave.pcm {{ type null }}; file "/dev/null"; infile "{mic}"; format "raw" }}
"""


class VirtualCard:
    """The harness's ends of the two FIFOs, paced at ``mic_rate`` / ``spk_rate`` (mono PCM16)."""

    def __init__(
        self,
        root: Path,
        mic_rate: int,
        spk_rate: int,
        *,
        mic_channels: int = 1,
        loop_db: float | None = None,
        loop_delay_ms: float = 20.0,
        mic_period_ms: int = DEFAULT_MIC_PERIOD_MS,
    ) -> None:
        if loop_db is not None and (mic_rate != spk_rate or mic_channels != 1):
            raise ValueError("the loop needs one microphone channel at the speaker's rate")
        self.loop_gain = None if loop_db is None else 10 ** (loop_db / 20)
        self._echo = bytearray(int(mic_rate * loop_delay_ms / 1000) * 2)  # the air between them
        self.root = root
        self.mic_path, self.spk_path = root / "mic.fifo", root / "spk.fifo"
        self.config = root / "asound.conf"
        self.mic_rate, self.spk_rate, self.mic_channels = mic_rate, spk_rate, mic_channels
        self.mic_period_ms = mic_period_ms
        self._mic_audio = bytearray()
        self._mic_paused = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.out = bytearray()  # everything the speaker FIFO delivered
        self._threads: list[threading.Thread] = []
        self._mic_fd = self._spk_fd = -1

    def write_config(self, *, with_mic: bool = True) -> None:
        """The ALSA config (and the FIFOs; without ``with_mic`` the microphone is missing)."""
        for p in (self.mic_path, self.spk_path):
            if p.exists():
                p.unlink()
        if with_mic:
            os.mkfifo(self.mic_path)
        os.mkfifo(self.spk_path)
        self.config.write_text(CONFIG.format(mic=self.mic_path, spk=self.spk_path))

    def add_mic(self) -> None:
        """Plug the microphone in (its FIFO appears)."""
        os.mkfifo(self.mic_path)
        self._mic_fd = os.open(self.mic_path, os.O_RDWR)

    def open(self) -> None:
        """Open the harness ends (before PortAudio initialises) and start pacing."""
        if self.mic_path.exists():
            self._mic_fd = os.open(self.mic_path, os.O_RDWR)
        self._spk_fd = os.open(self.spk_path, os.O_RDWR)
        fcntl.fcntl(self._spk_fd, F_SETPIPE_SZ, 4096)
        for target in (self._feed, self._drain):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        """Stop the pacing threads and close our ends."""
        self._stop.set()
        for t in self._threads:
            t.join(2.0)
        for fd in (self._mic_fd, self._spk_fd):
            if fd >= 0:
                os.close(fd)

    def speak(self, pcm: bytes) -> None:
        """Queue audio (device rate, interleaved channels) for the microphone."""
        with self._lock:
            self._mic_audio += pcm

    def _feed(self) -> None:
        # 10 ms periods in real time; silence when nothing is queued (a quiet room). While
        # nobody reads (before PortAudio opens the device) periods are lost, not queued, as
        # a sound card's would be: a reader starts on fresh audio, at most MIC_BACKLOG old.
        n = self.mic_rate * self.mic_period_ms // 1000 * 2 * self.mic_channels
        backlog = MIC_BACKLOG * (self.mic_rate // 100 * 2 * self.mic_channels)
        t = time.monotonic()
        while not self._stop.is_set():
            if self._mic_fd >= 0 and not self._mic_paused.is_set() and self._unread(self._mic_fd) > backlog:
                with self._lock:
                    del self._mic_audio[:n]
                    del self._echo[:n]
            elif self._mic_fd >= 0 and not self._mic_paused.is_set():
                with self._lock:
                    data = bytes(self._mic_audio[:n])
                    del self._mic_audio[:n]
                    data += bytes(n - len(data))
                    if self.loop_gain is not None:
                        echo = bytes(self._echo[:n])
                        del self._echo[:n]
                        data = _mix(data, echo + bytes(n - len(echo)))
                os.write(self._mic_fd, data)
            t += self.mic_period_ms / 1000
            self._stop.wait(max(0.0, t - time.monotonic()))

    def pause_mic(self) -> None:
        """Stop feeding the microphone (its reads block: a stalled capture device)."""
        self._mic_paused.set()

    def resume_mic(self) -> None:
        """Feed the microphone again."""
        self._mic_paused.clear()

    def _drain(self) -> None:
        n = self.spk_rate // 100 * 2
        t = time.monotonic()
        while not self._stop.is_set():
            try:
                data = os.read(self._spk_fd, n)
            except OSError:
                return
            # A clock does not make up for time nobody wrote to it (before the stream opened):
            # it goes on from now, or its loop into the microphone would lag by that much.
            t = max(t, time.monotonic() - 0.01)
            with self._lock:
                self.out += data
                if self.loop_gain is not None:
                    x = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2") * self.loop_gain
                    self._echo += np.clip(x, -32768, 32767).astype("<i2").tobytes()
            t += len(data) / (self.spk_rate * 2)
            self._stop.wait(max(0.0, t - time.monotonic()))

    def _unread(self, fd: int) -> int:
        buf = bytearray(4)
        fcntl.ioctl(fd, FIONREAD, buf)
        return int.from_bytes(buf, "little")

    def left_device(self) -> int:
        """Samples that have left the playback device so far (read, plus in the pipe)."""
        buf = bytearray(4)
        with self._lock:
            fcntl.ioctl(self._spk_fd, FIONREAD, buf)
            return (len(self.out) + int.from_bytes(buf, "little")) // 2

    def output(self) -> np.ndarray:
        """Everything the speaker produced so far, as int16 samples."""
        with self._lock:
            return np.frombuffer(bytes(self.out[: len(self.out) // 2 * 2]), dtype="<i2").copy()


def _mix(a: bytes, b: bytes) -> bytes:
    x = np.frombuffer(a, dtype="<i2").astype(np.int32) + np.frombuffer(b, dtype="<i2")
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


@contextmanager
def virtual_card(
    root: Path,
    mic_rate: int,
    spk_rate: int,
    *,
    mic_channels: int = 1,
    loop_db: float | None = None,
    mic_period_ms: int = DEFAULT_MIC_PERIOD_MS,
) -> Iterator[VirtualCard]:
    """A running virtual card with ALSA_CONFIG_PATH set for this process (``loop_db``: the
    speaker is heard by the microphone)."""
    card = VirtualCard(
        root, mic_rate, spk_rate, mic_channels=mic_channels, loop_db=loop_db, mic_period_ms=mic_period_ms
    )
    card.write_config()
    card.open()
    old = os.environ.get("ALSA_CONFIG_PATH")
    os.environ["ALSA_CONFIG_PATH"] = str(card.config)
    try:
        yield card
    finally:
        if old is None:
            os.environ.pop("ALSA_CONFIG_PATH", None)
        else:
            os.environ["ALSA_CONFIG_PATH"] = old
        card.close()


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.3) -> np.ndarray:
    """A sine tone as int16."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype("<i2")


def frequency(x: np.ndarray, rate: int) -> float:
    """Dominant frequency, with parabolic interpolation of the FFT peak (Hann window)."""
    w = x.astype(np.float64) * np.hanning(len(x))
    spec = np.abs(np.fft.rfft(w))
    k = int(np.argmax(spec[1:])) + 1
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return float((k + offset) * rate / len(x))
