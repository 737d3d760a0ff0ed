"""A GPU host's malformed answers (a 200 of the wrong types) are the host's defect: they
count against its circuit, and a file whose retries end on one waits, it never fails."""

import logging

import httpx
import pytest

from services.gpu_stage.model_api import call_model
from shared.breaker import BreakerPolicy, CircuitBreaker, call_through, unavailable
from shared.model_http import ModelApiClient
from shared.retry import CallOutcome, RetryPolicy

OK = CallOutcome(response={"ok": True})
MALFORMED = CallOutcome(
    error_kind="transient",
    error="malformed lid answer from http://h:1/v1/lid for b/f: language: Input should be "
    "a valid string (got 12345)",
    status=200,
    defect=True,
)
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0, budget_s=60.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay


def breaker(clock: Clock, **policy: float) -> CircuitBreaker:
    return CircuitBreaker(
        "lid",
        "h",
        BreakerPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
        sleep=clock.sleep,
    )


async def test_a_wrong_typed_answer_is_a_defect_of_the_host() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"language": 12345, "confidence": "high"})

    client = ModelApiClient(httpx.MockTransport(answer))
    outcome = await call_model(
        client, "http://h:1/v1/lid", {"batch_id": "b", "file_name": "f"}, 5.0, stage="lid"
    )
    assert outcome.defect and outcome.error_kind == "transient" and outcome.status == 200
    assert "language" in (outcome.error or "") and "b/f" in (outcome.error or "")
    assert unavailable(outcome) == "malformed"


async def test_malformed_answers_in_a_row_open_the_circuit_naming_host_and_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = breaker(Clock(), malformed_after=3)
    caplog.set_level(logging.WARNING, logger="shared.breaker")
    for n in range(2):
        assert not b.observe(MALFORMED, f"b/f{n}").systemic
    assert not b.is_open
    assert b.observe(MALFORMED, "b/f2").systemic
    assert b.reason == "malformed" and "language" in b.detail
    warned = [r for r in caplog.records if "malformed answer" in r.getMessage()]
    assert warned and getattr(warned[-1], "host", None) == "h"
    assert "language" in warned[-1].getMessage()


async def test_a_good_answer_between_malformed_ones_restarts_the_count() -> None:
    b = breaker(Clock(), malformed_after=2)
    b.observe(MALFORMED, "b/f0")
    b.observe(OK, "b/f1")
    b.observe(MALFORMED, "b/f2")
    assert not b.is_open


async def test_a_file_whose_retries_end_on_malformed_answers_waits_then_succeeds() -> None:
    clock = Clock()
    # The run never reaches the breaker's count, so only the spent retries open it.
    b = breaker(clock, malformed_after=100)
    answers = [MALFORMED] * 7 + [OK]

    async def call() -> CallOutcome:
        return answers.pop(0)

    attempts, outcome = await call_through(
        b, call, FAST, file="b/f", host="h", request={}, first_attempt=1
    )
    assert outcome is not None and outcome.ok
    assert len(attempts) == 8 and not b.is_open


async def test_a_host_that_stays_malformed_past_the_deadline_gives_the_file_back() -> None:
    clock = Clock()
    b = breaker(clock, malformed_after=3)
    answers = [MALFORMED] * 1000

    async def call() -> CallOutcome:
        return answers.pop(0)

    attempts, outcome = await call_through(
        b, call, FAST, file="b/f", host="h", request={}, first_attempt=1, give_up_after_s=30.0
    )
    assert outcome is None  # the caller fails the file over; it never fails here
    assert b.reason == "malformed" and attempts and not any(a.ok for a in attempts)
