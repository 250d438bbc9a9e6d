"""Audio cores without devices: resampling, the LED VAD, capture conditioning, the jitter buffer,
the file and FIFO adapters, and ten minutes of jittery full-duplex streaming on a manual clock."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from kiosk.audio.capture import CaptureChunker, Gather
from kiosk.audio.files import FileMicrophone, RawSpeaker
from kiosk.audio.pcm import RATE, read_wav, write_wav
from kiosk.audio.playback import FADE_MS, PlaybackBuffer
from kiosk.audio.resample import Resampler
from kiosk.audio.vad import LedVad
from kiosk.sim.scenario import SCENARIOS
from tests.alsa import frequency, tone

pytestmark = pytest.mark.timeout(60)
SPEECH = SCENARIOS / "audio" / "happy_v1.wav"


class Clock:
    """A manual monotonic clock."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(("src", "dst"), [(48000, 24000), (24000, 48000), (44100, 24000), (24000, 16000)])
def test_streaming_resampler_keeps_a_1khz_tone_within_1_percent(src: int, dst: int) -> None:
    r = Resampler(src, dst)
    x = tone(1000, 1.0, src)
    out = b"".join(r(x[i : i + src // 50].tobytes()) for i in range(0, len(x), src // 50)) + r.drain()
    y = np.frombuffer(out, dtype="<i2")
    assert abs(len(y) - dst) <= dst // 100
    assert abs(frequency(y[dst // 10 : -dst // 10], dst) - 1000) < 10


def test_led_vad_lights_for_speech_and_goes_dark_after_the_hangover() -> None:
    vad = LedVad(aggressiveness=2, frame_ms=30, hangover_ms=300)
    speech = read_wav(SPEECH)
    changes = [vad.feed(speech[i : i + 1920]) for i in range(0, len(speech), 1920)]
    assert True in changes
    quiet = [vad.feed(bytes(1920)) for _ in range(20)]  # 800 ms of silence
    assert False in quiet and not vad.active
    silent = LedVad()
    assert all(silent.feed(bytes(1920)) is None for _ in range(50))


def test_capture_picks_the_channel_applies_gain_and_cuts_chunks() -> None:
    async def run() -> None:
        c = CaptureChunker(24000, 4, chunk_ms=20, channel=2, gain_db=6.0, queue_chunks=10)
        frames = np.zeros((480, 4), dtype="<i2")
        frames[:, 2] = 1000
        frames[:, 0] = 30000
        c.feed(frames.tobytes())
        assert c.queue.qsize() == 1
        chunk = np.frombuffer(await c.queue.get(), dtype="<i2")
        assert len(chunk) == 480 and abs(int(chunk[100]) - 1995) <= 2  # +6 dB of channel 2 only
        d = CaptureChunker(24000, 2, chunk_ms=20, downmix=True)
        d.feed(np.tile(np.array([[1000, 3000]], dtype="<i2"), (480, 1)).tobytes())
        assert np.frombuffer(await d.queue.get(), dtype="<i2")[10] == 2000

    asyncio.run(run())


def test_capture_overflow_drops_the_oldest_counts_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        c = CaptureChunker(24000, 1, chunk_ms=20, queue_chunks=4)
        for i in range(10):
            c.feed(np.full(480, i, dtype="<i2").tobytes())
        assert c.overflows == 6 and c.queue.qsize() == 4
        assert np.frombuffer(await c.queue.get(), dtype="<i2")[0] == 6  # the newest survive

    asyncio.run(run())
    assert any(getattr(r, "kiosk", {}).get("event") == "capture_overflow" for r in caplog.records)


def test_jitter_buffer_waits_for_the_prebuffer_in_amount_and_time() -> None:
    clock = Clock()
    buf = PlaybackBuffer(60, clock=clock)
    buf.write(bytes(range(256)) * 30, "a")  # 160 ms at once (a fast burst)
    assert buf.read(480) == (bytes(480), False)  # arrived just now: wait
    clock.t = 0.06
    data, audible = buf.read(480)
    assert audible and data[:4] == bytes(range(4))
    small = PlaybackBuffer(60, clock=clock)
    small.write(b"\x01\x00" * 480, "b")  # 20 ms only
    clock.t = 1.0
    assert small.read(480)[1] is False
    small.end_of_stream()  # the reply is complete: play what there is
    assert small.read(960) == (b"\x01\x00" * 480 + bytes(960 - 960), True)


def test_flush_fades_out_within_10_ms_and_counts_underruns() -> None:
    clock = Clock()
    buf = PlaybackBuffer(0, clock=clock)
    buf.write(np.full(24000, 10000, dtype="<i2").tobytes(), "a")
    buf.read(4800)
    played = buf.flush()
    assert played == {"a": 100.0 + FADE_MS}
    fade = np.frombuffer(buf.read(960)[0], dtype="<i2")
    assert fade[0] > 9000 and abs(int(fade[FADE_MS * 24 - 1])) < 100 and not fade[FADE_MS * 24 :].any()
    assert FADE_MS <= 10
    assert buf.read(960) == (bytes(960), False) and buf.underruns == 0
    buf.write(bytes(960), "b")
    buf.read(480)
    buf.read(960)  # runs dry mid-reply: an underrun
    assert buf.underruns == 1


def test_file_microphone_reads_a_wav_at_its_own_rate(tmp_path: Path) -> None:
    wav = tmp_path / "v.wav"
    write_wav(wav, tone(1000, 0.5, 48000).tobytes(), 48000)

    async def run() -> bytes:
        mic = FileMicrophone(wav, chunk_ms=20, speed=20.0, queue_chunks=200)
        await mic.start()
        got = b""
        async with asyncio.timeout(10):
            while len(got) < RATE * 2 * 0.6:
                got += await mic.read()
        await mic.close()
        return got

    y = np.frombuffer(asyncio.run(run()), dtype="<i2")
    assert abs(frequency(y[1200:10800], RATE) - 1000) < 10
    assert np.abs(y[12300:]).max() < 50, "after the end of the file the room is quiet"


def test_fifo_microphone_and_speaker_are_paced_by_the_other_end(tmp_path: Path) -> None:
    mic_fifo, spk_fifo = tmp_path / "mic", tmp_path / "spk"
    os.mkfifo(mic_fifo)
    os.mkfifo(spk_fifo)
    signal = tone(500, 0.3, RATE).tobytes()
    heard = bytearray()
    done = threading.Event()

    def writer() -> None:
        with open(mic_fifo, "wb") as f:
            f.write(signal)

    def reader() -> None:
        # A sound card's pace: 10 ms every 10 ms (the speaker thread blocks in between).
        with open(spk_fifo, "rb") as f:
            while not done.wait(0.01):
                heard.extend(f.read(480))

    async def run() -> bytes:
        threads = [threading.Thread(target=t, daemon=True) for t in (writer, reader)]
        for t in threads:
            t.start()
        mic = FileMicrophone(mic_fifo, chunk_ms=20, queue_chunks=200)
        speaker = RawSpeaker(spk_fifo, prebuffer_ms=0)
        await mic.start()
        await speaker.start(lambda playing: None)
        got = b""
        async with asyncio.timeout(10):
            while len(got) < len(signal):
                got += await mic.read()
        speaker.write(got, "echo")
        speaker.end_of_stream()
        async with asyncio.timeout(10):
            while signal not in bytes(heard):  # noqa: ASYNC110 - filled by the reader thread
                await asyncio.sleep(0.02)
        done.set()
        await speaker.close()
        await mic.close()
        for t in threads:
            t.join(2)
        return got

    got = asyncio.run(run())
    assert got[: len(signal)] == signal, "raw FIFO input arrives bit-exact, and went out bit-exact"


def test_ten_minutes_of_jittery_full_duplex_streaming_never_underruns() -> None:
    """Replies arrive as the simulator and the API send them (100 ms deltas, faster than
    real time), each delta delayed by a random 0-160 ms (+-80 ms around the mean) and kept
    in order (one TCP stream). The device pulls 10 ms periods on a manual clock; the
    microphone pushes 10 ms periods into the capture queue, drained by an uplink that
    stalls now and then. After each reply's prebuffer: no underruns; no queue unbounded."""
    rnd = random.Random(4)
    clock = Clock()
    buf = PlaybackBuffer(60, clock=clock)
    capture = CaptureChunker(RATE, 1, chunk_ms=40, queue_chunks=50)
    period = 0.01
    arrivals: list[tuple[float, bytes, str]] = []
    t, n_reply = 0.5, 0
    while t < 600:
        n_reply += 1
        seconds = rnd.uniform(2, 15)
        speed = rnd.uniform(4, 8)  # how much faster than real time the server streams
        last = t
        for k in range(int(seconds * 10)):
            last = max(last, t + k * 0.1 / speed + rnd.uniform(0, 0.16))
            arrivals.append((last, bytes(4800), f"item_{n_reply}"))
        t += seconds + rnd.uniform(1, 6)  # the visitor answers, then the next reply
    ends = {}
    for at, _, tag in arrivals:
        ends[tag] = at  # end_of_stream when a reply's last delta has arrived
    max_queued = 0.0
    max_capture = 0

    async def uplink_steps() -> None:
        nonlocal max_queued, max_capture
        i = 0
        pending_ends = sorted((at, tag) for tag, at in ends.items())
        e = 0
        stall_until = 0.0
        steps = int(600 / period)
        for step in range(steps):
            clock.t = step * period
            while i < len(arrivals) and arrivals[i][0] <= clock.t:
                buf.write(arrivals[i][1], arrivals[i][2])
                i += 1
            while e < len(pending_ends) and pending_ends[e][0] <= clock.t:
                buf.end_of_stream()
                e += 1
            buf.read(480)
            capture.feed(bytes(480))  # the microphone never stops (full duplex)
            if clock.t >= stall_until:
                while not capture.queue.empty():
                    capture.queue.get_nowait()
                if rnd.random() < 0.002:
                    stall_until = clock.t + rnd.uniform(0.1, 1.0)  # the uplink stalls briefly
            max_queued = max(max_queued, buf.stats().queued_ms)
            max_capture = max(max_capture, capture.queue.qsize())

    asyncio.run(uplink_steps())
    assert n_reply > 40
    assert buf.underruns == 0
    assert capture.overflows == 0 and max_capture <= 25
    assert max_queued <= 15000, "the jitter buffer holds at most one reply"


def test_a_late_delta_mid_reply_does_not_make_the_speaker_idle() -> None:
    clock = Clock()
    buf = PlaybackBuffer(0, clock=clock)
    buf.write(bytes(960), "a")
    assert buf.read(960)[1] is True
    assert buf.read(960) == (bytes(960), True), "an underrun: still the assistant's turn"
    assert buf.underruns == 1
    buf.write(b"\x01\x00" * 480, "a")
    assert buf.read(960)[1] is True
    buf.end_of_stream()  # response.done: nothing more is coming
    assert buf.read(960)[1] is False, "played out"
    buf.write(bytes(960), "b")
    buf.read(960)
    buf.read(960)  # dry again, mid-reply
    buf.end_of_stream()  # and then the reply turns out to be complete
    assert buf.read(960)[1] is False


def test_gather_hands_over_one_block_per_chunk_as_the_completing_period_arrives() -> None:
    got: list[tuple[bytes, float | None]] = []
    gather = Gather(RATE, 1, 40, lambda block, t: got.append((block, t)))
    periods = [bytes([k]) * 480 for k in range(8)]  # 10 ms each at 24 kHz
    for k, p in enumerate(periods[:3]):
        gather.add(p, k * 0.01)
    assert got == [], "three periods do not make a 40 ms chunk"
    gather.add(periods[3], 0.03)
    assert got == [(b"".join(periods[:4]), pytest.approx(0.0))], "the fourth completes it: one block, stamped"
    for k, p in enumerate(periods[4:], start=4):
        gather.add(p, k * 0.01)
    assert got[1] == (b"".join(periods[4:]), pytest.approx(0.04))


def test_a_block_is_stamped_with_what_all_its_periods_say_about_its_first_frame() -> None:
    got: list[float | None] = []
    gather = Gather(RATE, 1, 40, lambda block, t: got.append(t))
    errors = [0.0004, -0.0002, 0.0003, -0.0001]  # each period's stamp a little off, as devices' are
    for k, e in enumerate(errors):
        gather.add(bytes(480), 1.0 + k * 0.01 + e)
    # The first period's stamp alone would be 0.4 ms off; four of them average to 0.1 ms (the
    # echo canceller's alignment is fitted to these times).
    assert got == [pytest.approx(1.0 + sum(errors) / 4, abs=1e-9)]


def test_gather_with_periods_that_do_not_divide_a_chunk_still_hands_over_on_time() -> None:
    handed: list[int] = []  # frames handed over so far, at each hand-over
    total = 0

    def deliver(block: bytes, t: float | None) -> None:
        nonlocal total
        total += len(block) // 4  # stereo PCM16
        handed.append(total)

    gather = Gather(RATE, 2, 40, deliver)
    for _ in range(20):
        gather.add(bytes(360 * 4), None)  # 15 ms periods, two channels
    chunk = 960
    assert handed, "blocks were handed over"
    for frames in handed:
        # Each hand-over comes with the period that crossed a chunk boundary: less than one
        # period past it, never a whole period late.
        assert frames % chunk < 360, (frames, handed)
    assert handed[-1] // chunk == 20 * 360 // chunk, "every completed chunk went over"


def test_the_speaker_level_is_worked_out_only_when_asked_and_follows_the_last_period() -> None:
    buf = PlaybackBuffer(prebuffer_ms=0)
    assert buf.level_dbfs == -120.0, "nothing played yet"
    loud = tone(1000, 0.02, RATE).tobytes()
    buf.write(loud, "a")
    buf.end_of_stream()
    buf.read(480)
    assert -20.0 < buf.level_dbfs < -10.0, "the tone's period (-13.5 dBFS)"
    buf.read(480)
    buf.read(480)  # dry: silence handed on
    assert buf.level_dbfs == -120.0
