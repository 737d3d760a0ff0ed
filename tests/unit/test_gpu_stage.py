from typing import Any

import httpx
import pytest

from services.gpu_stage.exchange import CallTimeouts
from services.gpu_stage.handler import GpuStageHandler
from services.gpu_stage.model_api import call_model
from shared.breaker import CircuitBreaker
from shared.events import FileContext, FileFailed, FileReassigned, FileStageCompleted, encode
from shared.model_http import ModelApiClient
from shared.model_stage import decoder_for
from shared.retry import CallOutcome, RetryPolicy
from shared.topics import Topics

TOPICS = Topics("c")
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0)


def _input(stage: str = "distribute") -> FileStageCompleted:
    return FileStageCompleted(
        batch_id="b",
        file_name="a.wav",
        stage=stage,
        context=FileContext(audio_uri="file:///a.wav", host="h1"),
    )


def _handler(
    answers: list[CallOutcome],
    breaker: CircuitBreaker | None = None,
    failover_after_s: float | None = None,
) -> GpuStageHandler:
    async def call(request: dict[str, Any], timeout_s: float) -> CallOutcome:
        return answers.pop(0)

    return GpuStageHandler(
        stage="denoise",
        host="h1",
        topics=TOPICS,
        policy=FAST,
        breaker=breaker or CircuitBreaker("denoise", "h1"),
        call_model=call,
        failover_after_s=failover_after_s,
    )


async def test_success_publishes_to_the_hosts_next_stage_with_its_output() -> None:
    ok = CallOutcome(response={"denoised_uri": "file:///a.clean.wav", "duration_s": 3.5})
    [out] = await _handler([ok])(_input())
    event = out.event
    assert out.topic == "c.ivr.h1"
    assert isinstance(event, FileStageCompleted)
    assert event.stage == "denoise"
    assert event.context.denoised_uri == "file:///a.clean.wav"
    assert [a.ok for a in event.attempts] == [True]


async def test_transient_then_success_keeps_every_attempt() -> None:
    answers = [
        CallOutcome(error_kind="transient", error="HTTP 503"),
        CallOutcome(response={"denoised_uri": "file:///u.wav", "duration_s": 1}),
    ]
    [out] = await _handler(answers)(_input())
    event = out.event
    assert isinstance(event, FileStageCompleted)
    assert [(a.number, a.ok) for a in event.attempts] == [(1, False), (2, True)]


async def test_permanent_error_dead_letters_the_file_at_once() -> None:
    answers = [CallOutcome(error_kind="permanent", error="HTTP 422 undecodable audio")]
    [out] = await _handler(answers)(_input())
    event = out.event
    assert out.topic == "c.failed"
    assert isinstance(event, FileFailed)
    assert (event.stage, event.host, event.error_kind) == ("denoise", "h1", "permanent")
    assert event.input_event["file_name"] == "a.wav"


async def test_an_answer_that_skipped_the_clients_check_is_still_refused_by_the_fold() -> None:
    [out] = await _handler([CallOutcome(response={"nope": 1})])(_input())
    event = out.event
    assert isinstance(event, FileFailed)
    assert "malformed denoise answer from GPU host h1: denoised_uri: Field required" in (
        event.error
    )


async def instantly(delay: float) -> None:
    return None


REFUSED = CallOutcome(error_kind="transient", error="cannot reach h1", unreachable=True)


async def test_a_host_that_stops_answering_makes_its_files_wait_not_fail() -> None:
    ok = CallOutcome(response={"denoised_uri": "file:///u.wav", "duration_s": 1})
    breaker = CircuitBreaker("denoise", "h1", sleep=instantly)
    handler = _handler([REFUSED, REFUSED, REFUSED, REFUSED, ok], breaker)
    [out] = await handler(_input())
    event = out.event
    assert isinstance(event, FileStageCompleted)  # waited out the outage, then done
    assert [a.ok for a in event.attempts] == [False, False, False, False, True]
    assert [a.number for a in event.attempts] == [1, 2, 3, 4, 5]
    assert not breaker.is_open


async def test_a_host_down_past_the_failover_deadline_hands_its_file_back() -> None:
    now = [0.0]

    async def time_passes(delay: float) -> None:
        now[0] += 100

    breaker = CircuitBreaker("denoise", "h1", clock=lambda: now[0], sleep=time_passes)
    handler = _handler([REFUSED] * 10, breaker, failover_after_s=150)
    assert not handler.paused()
    [out] = await handler(_input())
    event = out.event
    assert out.topic == "c.uploads" and out.key == b"b"  # to the distributor, batch-keyed
    assert isinstance(event, FileReassigned)
    assert (event.stage, event.from_host, event.avoid, event.assignment) == (
        "denoise",
        "h1",
        ("h1",),
        1,
    )
    assert "GPU host h1 down for more than 150s (unreachable" in event.reason
    # Its refused attempts travel with it; the new host counts on from the highest.
    assert event.attempt_base == event.attempts[-1].number == len(event.attempts)
    assert not handler.paused()  # dead now: its records are taken and handed on


async def test_a_drained_host_hands_every_file_back_without_calling() -> None:
    handler = _handler([])
    handler.drained = {"h1"}
    later = _input("lid").model_copy(
        update={
            "context": FileContext(
                audio_uri="file:///u.wav", host="h1", attempt_high=7, left_hosts=("h0",)
            )
        }
    )
    [out] = await handler(later)
    event = out.event
    assert isinstance(event, FileReassigned)
    assert (event.avoid, event.attempt_base, event.attempts) == (("h0", "h1"), 7, ())


def test_decoder_refuses_events_meant_for_another_stage() -> None:
    with pytest.raises(ValueError, match="expects events of stage distribute"):
        decoder_for("denoise")(encode(_input("lid")))


async def test_model_api_client_classifies_http_answers() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/ok"):
            return httpx.Response(200, json={"is_ivr": False})
        if path.endswith("/busy"):
            return httpx.Response(429, headers={"Retry-After": "2"})
        return httpx.Response(422, json={"error": "undecodable audio"})

    async with ModelApiClient(httpx.MockTransport(answer)) as client:
        ok = await call_model(client, "http://h/v1/ok", {}, 30.0, stage="ivr")
        busy = await call_model(client, "http://h/v1/busy", {}, 30.0, stage="ivr")
        bad = await call_model(client, "http://h/v1/bad", {}, 30.0, stage="ivr")
    assert ok.response == {"is_ivr": False}
    assert (busy.error_kind, busy.retry_after_s) == ("transient", 2.0)
    assert bad.error_kind == "permanent"
    assert "undecodable audio" in (bad.error or "")


async def test_a_cancelled_batch_is_not_started() -> None:
    calls: list[object] = []

    async def call(request: dict[str, Any], timeout_s: float) -> CallOutcome:
        calls.append(request)
        return CallOutcome(response={})

    handler = GpuStageHandler(
        stage="denoise",
        host="h1",
        topics=TOPICS,
        policy=FAST,
        breaker=CircuitBreaker("denoise", "h1"),
        call_model=call,
        cancelled={"b"},
    )
    assert await handler(_input()) == []
    assert calls == []


async def test_retried_files_continue_their_attempt_numbers() -> None:
    event = _input().model_copy(update={"next_attempt": 6})
    ok = CallOutcome(response={"denoised_uri": "file:///u.wav", "duration_s": 1})
    [out] = await _handler([ok])(event)
    done = out.event
    assert isinstance(done, FileStageCompleted)
    assert [a.number for a in done.attempts] == [6]
    assert done.next_attempt == 1


async def test_a_long_calls_request_waits_longer_and_keeps_its_retries() -> None:
    seen: list[float] = []

    async def call(request: dict[str, Any], timeout_s: float) -> CallOutcome:
        seen.append(timeout_s)
        return CallOutcome(response={"denoised_uri": "file:///a.clean.wav", "duration_s": 3600})

    handler = GpuStageHandler(
        stage="denoise",
        host="h1",
        topics=TOPICS,
        policy=FAST,
        breaker=CircuitBreaker("denoise", "h1"),
        call_model=call,
        timeouts=CallTimeouts(base_s=30, per_audio_s=0.1),
    )
    long_call = _input().model_copy(
        update={"context": FileContext(audio_uri="file:///a.wav", host="h1", duration_s=3600)}
    )
    await handler(_input())
    await handler(long_call)
    assert seen == [30, pytest.approx(390)]
    _, policy = CallTimeouts(base_s=30, per_audio_s=0.1).for_file(long_call.context, FAST)
    assert policy.budget_s == pytest.approx(FAST.budget_s + 360 * FAST.max_attempts)
