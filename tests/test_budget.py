"""Cost guards: prices, budgets, and usage per session in SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk import budget
from kiosk.config import CostSettings
from kiosk.leads.store import Store
from kiosk.realtime.session import Usage

PRICES = CostSettings(
    price_audio_in=32.0, price_audio_cached_in=0.4, price_text_in=4.0, price_audio_out=64.0, price_text_out=16.0
)


def test_cost_prices_each_kind_of_token_and_cached_input_once() -> None:
    usage = Usage(
        input_tokens=1_500_000,
        output_tokens=600_000,
        input_audio_tokens=1_000_000,
        input_text_tokens=500_000,
        cached_tokens=250_000,
        output_audio_tokens=500_000,
        output_text_tokens=100_000,
    )
    # 750k fresh audio in at $32/M + 250k cached at $0.40/M + 500k text in at $4/M
    # + 500k audio out at $64/M + 100k text out at $16/M
    assert budget.cost_usd(usage, PRICES) == pytest.approx(24.0 + 0.1 + 2.0 + 32.0 + 1.6)


@pytest.mark.parametrize(
    ("session", "day", "want"),
    [
        ((1000, 0.1), (5000, 1.0), budget.Verdict(False, False)),
        ((150_000, 0.1), (5000, 1.0), budget.Verdict(True, False)),
        ((1000, 2.0), (5000, 1.0), budget.Verdict(True, False)),
        ((1000, 0.1), (3_000_000, 1.0), budget.Verdict(False, True)),
        ((1000, 0.1), (5000, 50.0), budget.Verdict(False, True)),
    ],
)
def test_budgets(session: tuple[int, float], day: tuple[int, float], want: budget.Verdict) -> None:
    assert budget.check(*session, *day, CostSettings()) == want


def test_zero_means_no_limit() -> None:
    unlimited = CostSettings(session_max_tokens=0, session_max_usd=0, daily_max_tokens=0, daily_max_usd=0)
    assert budget.check(10**9, 1e6, 10**9, 1e6, unlimited) == budget.Verdict(False, False)


def test_usage_is_kept_per_session_and_summed_per_day(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    first = Usage(input_tokens=100, output_tokens=50, input_audio_tokens=100, output_audio_tokens=50)
    store.record_usage("s1", "2026-11-24", budget.token_counts(first), 0.25)
    store.record_usage("s1", "2026-11-24", budget.token_counts(first + first), 0.5)  # cumulative, upserted
    store.record_usage("s2", "2026-11-24", budget.token_counts(first), 0.25)
    store.record_usage("s3", "2026-11-25", budget.token_counts(first), 9.0)
    assert store.usage_for_day("2026-11-24") == (450, 0.75)
    assert store.count("usage") == 3
    store.close()
