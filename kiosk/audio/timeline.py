"""When each sample of a stream met the converter: device timestamps, smoothed.

A sound card's callback reports, per block, the time its first sample was (or will be)
converted: PortAudio's ``inputBufferAdcTime`` / ``outputBufferDacTime``. One report is
noisy (scheduling jitter), but a stream is a clock: sample ``k`` is converted at
``t0 + (k - k0) * period``, with a period a few tens of ppm off the nominal rate (the
card's crystal). :class:`Timeline` follows that line with a delay-locked loop (a second
order filter: the time is corrected by a fraction of each report's error, the period by a
smaller one), so it filters the jitter and follows the drift. A report far off the line
several times in a row is a jump (the card dropped or repeated audio): the line is moved
there at once rather than slewed, so the echo canceller's reference stays exactly aligned.

Pure: the times come in with the reports; nothing here reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Timeline:
    """Sample index -> time (seconds) of one stream, learned from block timestamps."""

    rate: float
    bandwidth_hz: float = 0.5  # how fast the loop follows: slower filters more jitter
    jump_s: float = 0.001  # reports this far off the line (or 5 sigma of the jitter, if more) ...
    jump_reports: int = 3  # ... this many times in a row: a jump
    _k0: float = 0.0
    _t0: float = 0.0
    _period: float = 0.0
    _started: bool = False
    _off: int = 0
    _jitter2: float = 0.0  # mean square of the reports' errors (jitter seen so far)
    _reports: int = 0
    jumps: int = 0

    @property
    def ready(self) -> bool:
        """True once a report has been seen."""
        return self._started

    @property
    def period(self) -> float:
        """Seconds per sample, as measured (the nominal one until the loop has learned it)."""
        return self._period if self._started else 1.0 / self.rate

    def report(self, index: float, t: float) -> None:
        """Sample ``index`` (counted from the start of the stream) was converted at ``t``."""
        if not self._started:
            self._k0, self._t0, self._period, self._started = index, t, 1.0 / self.rate, True
            return
        n = index - self._k0
        if n <= 0:
            return
        predicted = self._t0 + n * self._period
        error = t - predicted
        self._reports += 1
        settled = self._reports > 100  # the jitter is known: jumps can be told from it
        if settled and abs(error) > max(self.jump_s, 5 * math.sqrt(self._jitter2)):
            self._off += 1
            if self._off >= self.jump_reports:
                self._k0, self._t0, self._off = index, t, 0
                self.jumps += 1
            return
        self._off = 0
        self._jitter2 += 0.01 * (error * error - self._jitter2)
        # The DLL's gains for a block of n samples: critically damped at bandwidth B.
        omega = 2 * math.pi * self.bandwidth_hz * n * self._period
        self._t0 = predicted + math.sqrt(2) * omega * error
        self._period += omega * omega * error / n
        self._k0 = index

    def time(self, index: float) -> float:
        """When sample ``index`` is converted."""
        return self._t0 + (index - self._k0) * self._period

    def index(self, t: float) -> float:
        """The (fractional) sample converted at time ``t``."""
        return self._k0 + (t - self._t0) / self._period
