"""Pure arithmetic over what the probes recorded: latencies, barge-in, truncation error, percentiles."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from kiosk.audio.pcm import Int16Array
from kiosk.bench.probe import DELTA, PERIOD

SAMPLES_PER_MS = 24


def pct(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank; NaN when there are no values)."""
    if not values:
        return math.nan
    s = sorted(values)
    return float(s[max(0, math.ceil(q / 100 * len(s)) - 1)])


def summary(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    """p50, p99, max and the sample count."""
    return {
        "p50": round(pct(values, 50), digits),
        "p99": round(pct(values, 99), digits),
        "max": round(max(values), digits) if values else math.nan,
        "n": len(values),
    }


def mic_to_wire(captured: Sequence[float], sends: Sequence[tuple[float, int]]) -> list[float]:
    """ms from the hand-over of a chunk's last period (it completes the chunk) to the chunk's send."""
    return [(t - captured[seq]) * 1000 for t, seq in sends if seq < len(captured)]


def wire_to_buffer(
    deltas: Sequence[tuple[float, str, int, int]], writes: Sequence[tuple[float, int, int]]
) -> list[float]:
    """ms from a delta's arrival to its audio being queued in the jitter buffer (every delta)."""
    return _follow([(t, r, k) for t, _, r, k in deltas], writes, first_only=False)


def wire_to_speaker(
    deltas: Sequence[tuple[float, str, int, int]], handed: Sequence[tuple[float, int, int, int]]
) -> list[float]:
    """ms from the arrival of a reply's first delta to its first frames handed to the device.

    Only first deltas count: later ones wait behind audio already playing (deliberately:
    the reply streams faster than real time), which is not latency the kiosk adds.
    """
    firsts = [(t, r, k) for t, _, r, k in deltas if k == 0]
    return _follow(firsts, [(t, r, k) for t, _, r, k in handed if k == 0], first_only=True)


def _follow(
    arrivals: Sequence[tuple[float, int, int]], seen: Sequence[tuple[float, int, int]], *, first_only: bool
) -> list[float]:
    """Pair each sighting with the latest earlier arrival of the same (reply, delta)."""
    events = sorted([(t, 0, r, k) for t, r, k in arrivals] + [(t, 1, r, k) for t, r, k in seen])
    latest: dict[tuple[int, int], float] = {}
    out: list[float] = []
    for t, kind, r, k in events:
        if kind == 0:
            latest[(r, k)] = t
        elif (r, k) in latest:
            out.append((t - latest[(r, k)]) * 1000)
            if first_only:
                del latest[(r, k)]
    return out


def barge_in(speech_started: Sequence[float], reads: Sequence[tuple[float, bool]]) -> list[float]:
    """ms from ``speech_started`` (received while audio played) to the first silent period handed over."""
    times = [t for t, _ in reads]
    out: list[float] = []
    for ts in speech_started:
        i = bisect.bisect_left(times, ts)
        if i == 0 or not reads[i - 1][1]:
            continue  # nothing was playing: not a barge-in
        for t, audible in reads[i:]:
            if not audible:
                out.append((t - ts) * 1000)
                break
    return out


def truncation_errors(
    truncates: Sequence[tuple[float, str, int]],
    deltas: Sequence[tuple[float, str, int, int]],
    handed: Sequence[tuple[float, int, int, int]],
    output: bytes,
) -> list[float]:
    """``audio_end_ms`` sent minus what the device really played of the item (ms, signed).

    The truth comes from the device output alone: the item's last marker handed over
    before the truncate, plus the audio after it up to the silence that follows the cut.
    """
    reply_of = {item: r for _, item, r, _ in deltas}
    x = np.frombuffer(output, dtype="<i2")
    out: list[float] = []
    for t, item, end_ms in truncates:
        r = reply_of.get(item)
        marks = [(pos, k) for th, pos, rr, k in handed if rr == r and th <= t]
        if r is None or not marks:
            continue
        pos, k = marks[-1]
        played = k * DELTA + _audible_run(x[pos : pos + 4 * DELTA])
        out.append(end_ms - played / SAMPLES_PER_MS)
    return out


def _audible_run(x: Int16Array) -> int:
    """Samples up to the last non-zero one before the first full period of silence."""
    nz = np.flatnonzero(x)
    if len(nz) == 0:
        return 0
    gaps = np.flatnonzero(np.diff(nz) > PERIOD)
    last = nz[gaps[0]] if len(gaps) else nz[-1]
    return int(last) + 1
