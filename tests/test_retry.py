"""The one retry policy: full-jitter backoff, and the Realtime reconnect schedule built on it."""

from __future__ import annotations

import random

from kiosk.errors import backoff_delay
from kiosk.realtime.connection import Reconnector


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    rng = random.Random(1)
    for failures in range(1, 15):
        ceiling = min(900.0, 5.0 * 2 ** (failures - 1))
        delays = [backoff_delay(failures, 5.0, 900.0, rng.random) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range
    assert backoff_delay(1000, 5.0, 900.0, lambda: 1.0) == 900.0



def test_reconnects_back_off_and_start_over_after_a_stable_connection() -> None:
    class Top(random.Random):
        def random(self) -> float:  # the top of each jitter range: the ceiling itself
            return 1.0

    recon = Reconnector(1.0, 8.0, stable_after=60.0, rng=Top())
    assert [recon.next_delay(now=0.0) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    recon.connected(100.0)
    assert recon.next_delay(now=110.0) == 8.0  # dropped after 10 s: still backing off
    recon.connected(200.0)
    assert recon.next_delay(now=300.0) == 1.0  # up for 100 s: a fresh start
