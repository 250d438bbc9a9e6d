"""When each sample of a stream met the converter: device timestamps, smoothed.

A sound card's callback reports, per block, the time its first sample was (or will be)
converted: PortAudio's ``inputBufferAdcTime`` / ``outputBufferDacTime``. One report is
noisy (scheduling jitter; some host APIs hand several blocks over at once), but a stream
is a clock: sample ``k`` is converted at ``t0 + k * period``, with a period a few tens of
ppm off the nominal rate (the card's crystal). :class:`Timeline` fits that line by least
squares over the last ``window_s`` of reports, refitted every ``refit_s`` of reports, so the
mapping moves smoothly and very little: the echo canceller's reference must not wobble.
Over a history shorter than ``slope_after_s`` the period is not fitted (it would be noise):
the last fitted one (at first the nominal one) is kept and the offset is fitted to the
last ``recent_s`` only, so the line is right where it is used, at the newest sample. A run
of reports all far off the line on the same side is a jump (the card dropped or repeated
audio): the history is dropped and the line starts again from there with the same period,
so the reference follows the jump at once instead of slewing across it.

Pure: the times come in with the reports; nothing here reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CAPACITY = 8192  # reports held before the oldest are compacted away (30 s of 10 ms blocks fit)


@dataclass
class Timeline:
    """Sample index -> time (seconds) of one stream, learned from block timestamps."""

    rate: float
    window_s: float = 30.0
    # Refit once the reports since the last fit span this long (a fit is a pass over the
    # window): by time, not by count, so a microphone reporting once a 40 ms chunk is
    # followed as closely as a speaker reporting every 10 ms period.
    refit_s: float = 0.1
    slope_after_s: float = 15.0  # history needed before the period is fitted too
    recent_s: float = 2.0  # the offset's history while the period is not fitted
    jump_s: float = 0.001  # reports this far off the line (or 5x the fit's RMS error, if more) ...
    jump_reports: int = 5  # ... this many times in a row, all on one side: a jump
    jumps: int = 0
    _x: np.ndarray = field(default_factory=lambda: np.zeros(CAPACITY))  # sample indexes ...
    _y: np.ndarray = field(default_factory=lambda: np.zeros(CAPACITY))  # ... and their times
    _first: int = 0  # the window is _x[_first:_n]
    _n: int = 0
    _t0: float = 0.0  # the fitted line: time of sample 0 ...
    _period: float = 0.0  # ... and seconds per sample
    _rms: float = 0.0  # of the reports around the line
    _fitted_at: float = -math.inf  # the newest report's time at the last fit
    _off: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._period = 1.0 / self.rate

    @property
    def ready(self) -> bool:
        """True once a report has been seen."""
        return self._n > self._first

    @property
    def settled(self) -> bool:
        """True once the line rests on ``slope_after_s`` of history (period fitted too)."""
        return self.ready and self._y[self._n - 1] - self._y[self._first] >= self.slope_after_s

    @property
    def period(self) -> float:
        """Seconds per sample, as measured (the nominal one until enough history)."""
        return self._period

    def report(self, index: float, t: float) -> None:
        """Sample ``index`` (counted from the start of the stream) was converted at ``t``."""
        if self.ready and self._is_off(index, t):
            return
        if self._n == CAPACITY:  # compact: keep the window, drop what went before it
            keep = self._n - self._first
            self._x[:keep], self._y[:keep] = self._x[self._first : self._n], self._y[self._first : self._n]
            self._first, self._n = 0, keep
        self._x[self._n], self._y[self._n] = index, t
        self._n += 1
        while t - self._y[self._first] > self.window_s:
            self._first += 1
        if self._n - self._first == 1 or t - self._fitted_at >= self.refit_s:
            self._fit()

    def _is_off(self, index: float, t: float) -> bool:
        """Watch for a jump; True when this report started a new line (or is held back)."""
        error = t - self.time(index)
        if abs(error) <= max(self.jump_s, 5 * self._rms) or self._n - self._first < 50:
            self._off.clear()
            return False
        self._off.append(error)
        if len(self._off) < self.jump_reports:
            return True  # held back until it is clear whether this is a jump
        if all(e > 0 for e in self._off) or all(e < 0 for e in self._off):
            self.jumps += 1
            self._first = self._n  # the period (the card's clock) is still right
            self._rms = 0.0
        self._off.clear()
        return False

    def _fit(self) -> None:
        self._fitted_at = float(self._y[self._n - 1])
        k0, tk = float(self._x[self._first]), float(self._y[self._first])
        x, y = self._x[self._first : self._n] - k0, self._y[self._first : self._n] - tk
        if y[-1] - y[0] >= self.slope_after_s and np.ptp(x) > 0:
            xm, ym = float(x.mean()), float(y.mean())
            period = float(np.dot(x - xm, y - ym) / np.dot(x - xm, x - xm))
            if abs(period * self.rate - 1.0) < 0.01:  # a sane clock (1 %): otherwise keep the last
                self._period = period
            recent = slice(None)
        else:
            recent = slice(int(np.searchsorted(y, y[-1] - self.recent_s)), None)
        offset = float(np.mean(y[recent] - x[recent] * self._period))
        self._t0 = tk + offset - k0 * self._period
        resid = y[recent] - x[recent] * self._period - offset
        self._rms = math.sqrt(float(np.mean(resid * resid)))

    def time(self, index: float) -> float:
        """When sample ``index`` is converted."""
        return self._t0 + index * self._period

    def index(self, t: float) -> float:
        """The (fractional) sample converted at time ``t``."""
        return (t - self._t0) / self._period
