"""The breaker under outages nobody listed: lying health checks, hosts without a probe route,
429 storms, a Retry-After past the retry budget, and flapping dependencies."""

import httpx

from services.gpu_stage.main import dead_for
from services.gpu_stage.model_api import probe as gpu_probe
from services.llm_stage.chat_api import probe as llm_probe
from shared.breaker import BreakerPolicy, CircuitBreaker, call_through
from shared.model_http import ModelApiClient
from shared.retry import CallOutcome, RetryPolicy

OK = CallOutcome(response={"ok": True})
REFUSED = CallOutcome(error_kind="transient", error="cannot reach h", unreachable=True)
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0, budget_s=60.0)


def http(status: int, retry_after_s: float | None = None) -> CallOutcome:
    kind = "transient" if status >= 500 or status == 429 else "permanent"
    return CallOutcome(
        error_kind=kind,  # type: ignore[arg-type]
        error=f"HTTP {status} from h",
        status=status,
        retry_after_s=retry_after_s,
    )


class Clock:
    """A clock that the breaker's own sleeps move forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay


def breaker(clock: Clock, **policy: float) -> CircuitBreaker:
    return CircuitBreaker(
        "denoise",
        "h",
        BreakerPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
        sleep=clock.sleep,
    )


async def through(
    b: CircuitBreaker, answers: list[CallOutcome], give_up: float | None = None
) -> tuple[int, CallOutcome | None]:
    async def call() -> CallOutcome:
        return answers.pop(0)

    attempts, outcome = await call_through(
        b, call, FAST, file="b/f", host="h", request={}, first_attempt=1, give_up_after_s=give_up
    )
    return len(attempts), outcome


async def test_a_passing_health_probe_never_closes_the_circuit_without_a_call() -> None:
    clock = Clock()
    b = breaker(clock, unreachable_after=1, max_probe_s=1.0)

    async def healthy() -> bool:
        return True  # /health says 200 while every call answers 503

    b.probe = healthy
    b.observe(REFUSED, "b/x")
    opened_at = b.opened_at
    # Past the failover deadline a late trial is made, answered 503: still open, same outage.
    made, outcome = await through(b, [http(503)], give_up=0.0)
    assert outcome is None and made == 1
    assert b.is_open and b.opened_at == opened_at
    clock.now += 5.0
    made, outcome = await through(b, [http(503)], give_up=0.0)
    assert outcome is None and b.is_open and b.opened_at == opened_at
    # The host really answers: the trial call closes it.
    clock.now += 5.0
    made, outcome = await through(b, [OK], give_up=0.0)
    assert outcome is not None and outcome.ok and not b.is_open


async def test_a_dependency_without_a_probe_recovers_through_trial_calls() -> None:
    clock = Clock()
    b = breaker(clock, unreachable_after=1)
    b.observe(REFUSED, "b/x")
    made, outcome = await through(b, [REFUSED, REFUSED, OK])
    assert outcome is not None and outcome.ok and made == 3
    assert not b.is_open


async def test_reopening_soon_after_closing_keeps_the_first_opening() -> None:
    clock = Clock()
    b = breaker(clock, unreachable_after=1, reopen_within_s=60.0)
    b.observe(REFUSED, "b/x")
    clock.now = 20.0
    b.observe(OK, "b/y")  # one call got through
    assert not b.is_open
    clock.now = 30.0
    b.observe(REFUSED, "b/z")
    assert b.open_for() == 30.0  # the failover deadline counts from the first opening
    clock.now = 40.0
    b.observe(OK, "b/y")
    clock.now = 200.0
    b.observe(REFUSED, "b/z")
    assert b.open_for() == 0.0  # closed long enough: a new outage


async def test_sustained_429s_open_the_circuit() -> None:
    clock = Clock()
    b = breaker(clock, throttled_after=4)
    for n in range(3):
        assert not b.observe(http(429), f"b/f{n}").systemic
    assert b.observe(http(429), "b/f3").systemic
    assert b.reason == "rate_limited" and b.paused()


async def test_a_retry_after_past_the_budget_waits_it_out_and_fails_nothing() -> None:
    clock = Clock()
    b = breaker(clock)
    short = RetryPolicy(max_attempts=5, base_delay_s=0.0, max_delay_s=0.0, budget_s=2.0)
    answers = [http(429, retry_after_s=30.0), OK]

    async def call() -> CallOutcome:
        return answers.pop(0)

    attempts, outcome = await call_through(
        b, call, short, file="b/f", host="h", request={}, first_attempt=1
    )
    assert outcome is not None and outcome.ok
    assert [a.number for a in attempts] == [1, 2]
    assert sum(clock.slept) >= 30.0  # the trial waited for the Retry-After, paused


async def test_retries_spent_on_503_wait_but_a_500_is_the_files_own_failure() -> None:
    clock = Clock()
    b = breaker(clock)
    made, outcome = await through(b, [http(503)] * 3 + [OK])
    assert outcome is not None and outcome.ok and made == 4
    made, outcome = await through(b, [http(500)] * 3)
    assert outcome is not None and outcome.error_kind == "transient" and made == 3
    assert not b.is_open
    made, outcome = await through(b, [REFUSED] * 3 + [OK])
    assert outcome is not None and outcome.ok


async def test_a_long_outage_never_overflows_the_probe_backoff() -> None:
    clock = Clock()
    b = breaker(clock, unreachable_after=1, max_probe_s=10.0)
    b.observe(REFUSED, "b/x")
    b.failed_probes = 5000
    assert 5.0 <= b._delay() <= 10.0


async def test_probes_pass_on_a_missing_route_and_fail_on_a_503() -> None:
    def answer(status: int) -> ModelApiClient:
        return ModelApiClient(httpx.MockTransport(lambda request: httpx.Response(status)))

    assert await gpu_probe(answer(404), "http://h:1/health")
    assert await llm_probe(answer(404), "http://api/v1", "key")
    assert await gpu_probe(answer(200), "http://h:1/health")
    assert not await gpu_probe(answer(503), "http://h:1/health")
    assert not await llm_probe(answer(401), "http://api/v1", "key")


def test_a_host_failing_every_call_while_healthy_counts_as_dead() -> None:
    clock = Clock()
    b = breaker(clock, storm_after=2)
    for n in range(2):
        b.observe(http(503), f"b/f{n}")
    assert b.reason == "server_errors"
    assert dead_for([b], 3.0) < 0
    clock.now = 4.0
    assert dead_for([b], 3.0) > 0


async def test_a_file_waiting_out_a_long_outage_carries_a_bounded_list_of_attempts() -> None:
    clock = Clock()
    b = breaker(clock, unreachable_after=1)
    made, outcome = await through(b, [REFUSED] * 500 + [OK])
    assert outcome is not None and outcome.ok
    assert made == 20  # the first 5 and the latest 15 of 501, so the event stays small


async def test_the_kept_attempts_keep_their_numbers() -> None:
    clock = Clock()
    b = breaker(clock, unreachable_after=1)
    answers = [REFUSED] * 100 + [OK]

    async def call() -> CallOutcome:
        return answers.pop(0)

    attempts, _ = await call_through(
        b, call, FAST, file="b/f", host="h", request={}, first_attempt=1
    )
    numbers = [a.number for a in attempts]
    assert numbers[:5] == [1, 2, 3, 4, 5] and numbers[-1] == 101 and numbers == sorted(numbers)
