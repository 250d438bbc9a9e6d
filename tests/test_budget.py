"""Cost guards: prices, budgets, and usage per session in SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk import budget
from kiosk.config import CostSettings
from kiosk.leads.store import Store
from kiosk.realtime.session import Usage

RATES = budget.Rates.of(CostSettings(), "gpt-realtime-2.1", "gpt-transcribe")


def test_a_visit_is_priced_per_model_and_modality_by_hand() -> None:
    # A realistic visit as the service reports it: the instructions and tools are cached
    # text, earlier turns cached audio; the visitor spoke 90 s (transcribed by the minute).
    reported = {"input_tokens": 52_000, "output_tokens": 10_500,
                "input_token_details": {"text_tokens": 40_000, "audio_tokens": 12_000, "cached_tokens": 38_000,
                                        "cached_tokens_details": {"text_tokens": 30_000, "audio_tokens": 8_000}},
                "output_token_details": {"text_tokens": 1_500, "audio_tokens": 9_000}}
    usage = Usage.from_response(reported) + Usage.from_transcription({"type": "duration", "seconds": 90})
    # gpt-realtime-2.1, per million: text $4 in / $0.40 cached / $24 out, audio $32 / $0.40 / $64;
    # gpt-transcribe $0.0045 a minute. By hand:
    by_hand = (
        10_000 * 4.0 / 1e6      # fresh text in      $0.04
        + 30_000 * 0.4 / 1e6    # cached text in     $0.012
        + 4_000 * 32.0 / 1e6    # fresh audio in     $0.128
        + 8_000 * 0.4 / 1e6     # cached audio in    $0.0032
        + 1_500 * 24.0 / 1e6    # text out           $0.036
        + 9_000 * 64.0 / 1e6    # audio out          $0.576
        + 1.5 * 0.0045          # transcription      $0.00675
    )  # fmt: skip
    assert by_hand == pytest.approx(0.80195)
    assert budget.cost_usd(usage, RATES) == pytest.approx(by_hand)


def test_token_billed_transcription_and_the_mini_model_have_their_own_prices() -> None:
    rates = budget.Rates.of(CostSettings(), "gpt-realtime-2.1-mini", "gpt-4o-mini-transcribe")
    usage = Usage(input_audio_tokens=10_000, output_audio_tokens=5_000) + Usage.from_transcription(
        {"type": "tokens", "input_tokens": 1_000, "output_tokens": 200, "total_tokens": 1_200,
         "input_token_details": {"audio_tokens": 1_000, "text_tokens": 0}})
    # mini: audio $10 in, $20 out; gpt-4o-mini-transcribe: audio $1.25 in, text $5 out (per million)
    assert budget.cost_usd(usage, rates) == pytest.approx(0.1 + 0.1 + 0.00125 + 0.001)


def test_without_details_cached_tokens_count_against_text_first() -> None:
    usage = Usage.from_response({"input_tokens": 300, "input_token_details": {
        "text_tokens": 100, "audio_tokens": 200, "cached_tokens": 150}})
    assert (usage.cached_text_tokens, usage.cached_audio_tokens) == (100, 50)


@pytest.mark.parametrize("garbage", [[1, 2], "lots", {"input_tokens": 10**40}, {"input_tokens": True},
                                     {"input_token_details": {"cached_tokens_details": 5}}])
def test_garbage_usage_is_zero_not_a_crash_or_a_fortune(garbage: object) -> None:
    usage = Usage.from_response(garbage)
    assert usage.input_tokens <= 10**9
    assert budget.cost_usd(usage, RATES) < 1e6


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
    cached = Usage(cached_text_tokens=7, cached_audio_tokens=3, transcription_ms=1500)
    store.record_usage("s4", "2026-11-26", budget.token_counts(cached), 0.01)
    (row,) = store.conn.execute("SELECT cached_text_tokens, cached_audio_tokens, transcription_ms FROM usage "
                                "WHERE session_id = 's4'").fetchall()
    assert tuple(row) == (7, 3, 1500)
    assert store.count("usage") == 4
    store.close()
