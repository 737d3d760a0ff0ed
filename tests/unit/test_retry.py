import random

from shared.retry import CallOutcome, RetryPolicy, backoff_delay, call_with_retries, classify_status


def test_classification() -> None:
    assert classify_status(503) == "transient"
    assert classify_status(429) == "transient"
    assert classify_status(422) == "permanent"
    assert classify_status(404) == "permanent"


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay_s=1, max_delay_s=4)
    rng = random.Random(1)
    assert all(backoff_delay(policy, 10, None, rng) <= 4 for _ in range(100))
    assert backoff_delay(policy, 1, 7.0, rng) == 7.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_transient_errors_are_retried_until_success() -> None:
    answers = [
        CallOutcome(error_kind="transient", error="503"),
        CallOutcome(error_kind="transient", error="timeout"),
        CallOutcome(response={"ok": 1}),
    ]
    clock = Clock()

    async def call() -> CallOutcome:
        return answers.pop(0)

    attempts, outcome = await call_with_retries(
        call, RetryPolicy(), host="h", request={}, sleep=clock.sleep, clock=clock
    )
    assert outcome.ok
    assert [a.number for a in attempts] == [1, 2, 3]
    assert [a.ok for a in attempts] == [False, False, True]


async def test_permanent_error_stops_at_once_and_budget_bounds_retries() -> None:
    clock = Clock()

    async def permanent() -> CallOutcome:
        return CallOutcome(error_kind="permanent", error="422")

    attempts, _ = await call_with_retries(
        permanent, RetryPolicy(), host=None, request={}, sleep=clock.sleep, clock=clock
    )
    assert len(attempts) == 1

    async def transient() -> CallOutcome:
        return CallOutcome(error_kind="transient", error="503")

    attempts, outcome = await call_with_retries(
        transient,
        RetryPolicy(max_attempts=4),
        host=None,
        request={},
        sleep=clock.sleep,
        clock=clock,
        first_attempt=3,
    )
    assert not outcome.ok
    assert [a.number for a in attempts] == [3, 4, 5, 6]
