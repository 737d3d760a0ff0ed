"""The circuit breaker: which failures are about the dependency, and how the stage waits."""

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from shared.breaker import BreakerPolicy, CircuitBreaker, call_through
from shared.metrics import Metrics
from shared.retry import CallOutcome, RetryPolicy

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0)
OK = CallOutcome(response={"ok": True})


def http(status: int, message: str) -> CallOutcome:
    kind = "transient" if status >= 500 or status == 429 else "permanent"
    return CallOutcome(error_kind=kind, error=message, status=status)  # type: ignore[arg-type]


async def instantly(delay: float) -> None:
    return None


async def _through(breaker: CircuitBreaker, answers: list[CallOutcome], file: str = "b/f"):  # type: ignore[no-untyped-def]
    async def call() -> CallOutcome:
        return answers.pop(0)

    return await call_through(
        breaker, call, FAST, file=file, host=None, request={}, first_attempt=1
    )


async def test_an_auth_error_opens_at_once_and_the_file_waits_for_the_key() -> None:
    breaker = CircuitBreaker("llm1", "api", sleep=instantly)
    attempts, outcome = await _through(breaker, [http(401, "bad key"), http(401, "bad key"), OK])
    assert outcome is not None and outcome.ok
    assert [a.ok for a in attempts] == [False, False, True]
    assert not breaker.is_open  # the second 401 was the half-open trial; the third call worked


async def test_a_corrupt_file_still_fails_at_once_and_opens_nothing() -> None:
    breaker = CircuitBreaker("denoise", "h")
    for n in range(5):
        _, outcome = await _through(breaker, [http(422, f"undecodable f{n}")], file=f"b/f{n}")
        assert outcome is not None and outcome.error_kind == "permanent"
    assert not breaker.is_open


async def test_the_same_404_on_two_files_is_a_missing_route_not_missing_files() -> None:
    breaker = CircuitBreaker("llm1", "api", sleep=instantly)
    _, first = await _through(breaker, [http(404, "no route")], file="b1/f1")
    assert first is not None and first.error_kind == "permanent"  # could be about the file
    _, other = await _through(breaker, [http(404, "audio f2 missing")], file="b1/f2")
    assert other is not None and not breaker.is_open  # a different message: about its file
    again = breaker.observe(http(404, "audio f2 missing"), "b2/f3")
    # The same message on another file: the route is missing; the file waits for it.
    assert breaker.is_open and again.systemic


async def test_a_storm_of_5xx_opens_only_after_many_in_a_row() -> None:
    breaker = CircuitBreaker("denoise", "h", BreakerPolicy(storm_after=3), sleep=instantly)
    # 20% 5xx is a faulty host, not a broken one: retried file by file.
    for n in range(10):
        await _through(breaker, [http(503, "busy"), OK], file=f"b/f{n}")
    assert not breaker.is_open
    attempts, outcome = await _through(breaker, [http(503, "x")] * 4 + [OK])
    assert outcome is not None and outcome.ok
    assert len(attempts) == 5


async def test_probes_back_off_and_the_half_open_call_decides() -> None:
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    probes = [False, False, True]

    async def probe() -> bool:
        return probes.pop(0)

    breaker = CircuitBreaker(
        "denoise", "h", BreakerPolicy(unreachable_after=1), probe=probe, sleep=record
    )
    refused = CallOutcome(error_kind="transient", error="refused", unreachable=True)
    attempts, outcome = await _through(breaker, [refused, OK])
    assert outcome is not None and outcome.ok
    assert [a.number for a in attempts] == [1, 2]
    assert len(delays) == 3 and delays[0] <= 0.5 < delays[2] <= 2.0  # 0.5, 1, 2 ceilings


async def test_one_caller_probes_while_the_others_wait_then_all_go_on() -> None:
    gate = asyncio.Event()
    calls: list[str] = []
    breaker = CircuitBreaker("denoise", "h", BreakerPolicy(unreachable_after=1))

    async def slow_sleep(delay: float) -> None:
        await gate.wait()

    breaker.sleep = slow_sleep
    refused = CallOutcome(error_kind="transient", error="refused", unreachable=True)
    breaker.observe(refused, "b/x")
    assert breaker.is_open

    async def one(name: str) -> None:
        async def call() -> CallOutcome:
            calls.append(name)
            return OK

        await call_through(breaker, call, FAST, file=name, host=None, request={}, first_attempt=1)

    tasks = [asyncio.create_task(one(f"f{n}")) for n in range(3)]
    await asyncio.sleep(0)
    assert calls == []  # paused: nobody calls a down host
    gate.set()
    await asyncio.gather(*tasks)
    assert sorted(calls) == ["f0", "f1", "f2"]
    assert not breaker.is_open


async def test_readiness_and_the_gauge_say_why() -> None:
    metrics = Metrics()
    view = metrics.stage("llm1", "api")
    breaker = CircuitBreaker("llm1", "api", on_change=view.circuit)
    breaker.observe(http(401, "HTTP 401 from api: bad key"), "b/f")
    assert "auth" in (breaker.problem() or "") and "bad key" in (breaker.problem() or "")

    def gauge() -> dict[str, float]:
        text = metrics.exposition().decode()
        [family] = [
            f for f in text_string_to_metric_families(text) if f.name == "cofi_stage_circuit_open"
        ]
        return {s.labels["reason"]: s.value for s in family.samples}

    assert gauge() == {"auth": 1.0}
    breaker.observe(OK, "b/f")
    assert breaker.problem() is None
    assert gauge() == {"auth": 0.0}
