"""One backoff formula: exponential from the first delay, capped, with the asked jitter."""

import random

import pytest

from shared.backoff import Backoff
from shared.retry import RetryPolicy, backoff_delay

pytestmark = pytest.mark.unit


def test_without_jitter_the_delays_double_up_to_the_cap() -> None:
    waits = Backoff(first_delay_s=0.5, max_delay_s=3.0).waits()
    assert [waits.next() for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_a_reset_starts_again_from_the_first_delay() -> None:
    waits = Backoff(first_delay_s=1.0, max_delay_s=10.0).waits()
    waits.next(), waits.next()
    waits.reset()
    assert waits.next() == 1.0


def test_factor_one_keeps_a_steady_pace() -> None:
    backoff = Backoff(first_delay_s=0.2, max_delay_s=5.0, factor=1.0)
    assert {backoff.delay(n) for n in range(50)} == {0.2}


def test_a_long_run_of_failures_stays_at_the_cap_without_overflowing() -> None:
    assert Backoff(first_delay_s=0.1, max_delay_s=7.0).delay(100_000) == 7.0


def test_full_jitter_draws_anywhere_below_the_ceiling() -> None:
    backoff, rng = Backoff(first_delay_s=1.0, max_delay_s=4.0, jitter=1.0), random.Random(7)
    draws = [backoff.delay(5, rng) for _ in range(500)]
    assert all(0.0 <= d <= 4.0 for d in draws)
    assert min(draws) < 0.5 and max(draws) > 3.5  # the whole range is used


def test_equal_jitter_stays_in_the_upper_half() -> None:
    backoff, rng = Backoff(first_delay_s=2.0, max_delay_s=60.0, jitter=0.5), random.Random(3)
    assert all(2.0 <= backoff.delay(1, rng) <= 4.0 for _ in range(500))


def test_the_same_seed_gives_the_same_delays() -> None:
    backoff = Backoff(first_delay_s=0.2, max_delay_s=5.0, jitter=1.0)
    first = [backoff.delay(n, random.Random(42)) for n in range(8)]
    assert first == [backoff.delay(n, random.Random(42)) for n in range(8)]


def test_the_model_call_retries_keep_their_full_jitter_formula() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)
    ours, theirs = random.Random(11), random.Random(11)
    for attempt in range(1, 10):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        assert backoff_delay(policy, attempt, None, ours) == pytest.approx(
            theirs.uniform(0, ceiling)
        )


@pytest.mark.parametrize("bad", [{"jitter": 1.5}, {"jitter": -0.1}, {"factor": 0.5}])
def test_nonsense_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**bad)
