"""An audience run's pace (ingestion.pacing): it grows while entries are quick, shrinks while
Temporal is slow to answer, and never leaves [1, JOURNEYS_AUDIENCE_RATE]."""

from __future__ import annotations

from ingestion.pacing import Pacing


def batch(pace: Pacing, *seconds: float) -> float:
    for s in seconds:
        pace.took(s)
    return pace.adapt()


def test_the_rate_grows_while_entries_take_their_base_time() -> None:
    pace = Pacing(most=20, target=0.05)
    assert pace.rate == 5 and pace.batch == 5
    rates = [batch(pace, 0.010, 0.012, 0.011) for _ in range(30)]
    assert rates[0] > 5 and rates == sorted(rates)  # up, a user a second per batch at most
    assert rates[-1] == 20 and pace.batch == 16  # capped at JOURNEYS_AUDIENCE_RATE


def test_a_queue_as_long_as_the_target_holds_the_rate_and_twice_it_halves_the_rate() -> None:
    pace = Pacing(most=100, target=0.05, start=40)
    batch(pace, 0.010)  # the base: 10 ms
    held = batch(pace, 0.060, 0.060)  # 50 ms of queueing: the target, kept
    assert held == 41  # (the first batch, at the base, added one)
    assert batch(pace, 0.110, 0.110, 0.110) == held / 2  # 100 ms: twice the target
    assert batch(pace, 5.0) == held / 4  # never more than half at once
    for _ in range(20):
        batch(pace, 5.0)
    assert pace.rate == 1 and pace.batch == 1  # one a second at the least


def test_the_median_decides_not_one_slow_entry() -> None:
    pace = Pacing(most=100, target=0.05, start=10)
    assert batch(pace, 0.01, 0.01, 2.0) == 11


def test_no_target_is_the_fixed_rate() -> None:
    pace = Pacing(most=30, target=0)
    assert pace.rate == 30
    assert batch(pace, 0.01, 9.0, 9.0) == 30
