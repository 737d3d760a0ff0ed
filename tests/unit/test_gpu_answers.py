"""GPU answers are held to the contract's models at run time (strict JSON types): an answer a
lenient parser would misread fails the call, naming the file, the stage and the host."""

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from services.gpu_stage import exchange
from services.gpu_stage.handler import GpuStageHandler
from services.gpu_stage.model_api import call_model
from services.gpu_stage.model_contract import RESPONSES, UnknownStage, parse_answer
from shared.breaker import BreakerPolicy, CircuitBreaker
from shared.events import FileContext, FileStageCompleted
from shared.model_http import ModelApiClient
from shared.retry import CallOutcome, RetryPolicy
from shared.stages import GPU_STAGES
from shared.topics import Topics

URL = "http://10.0.0.7:5011/v1/ivr"
REQUEST = {"batch_id": "b1", "file_name": "call-9.wav", "audio_uri": "file:///a.wav"}
CONTEXT = FileContext(audio_uri="file:///a.wav", host="10.0.0.7")

# What a lenient host (or a JSON encoder of string fields) might answer, per stage.
WRONG: list[tuple[str, dict[str, Any]]] = [
    ("ivr", {"is_ivr": "false"}),
    ("ivr", {"is_ivr": 0}),
    ("ivr", {"is_ivr": None}),
    ("ivr", {}),
    ("stt", {"transcript": None}),
    ("stt", {"transcript": 42}),
    ("lid", {"language": ""}),
    ("lid", {"language": None}),
    ("denoise", {"denoised_uri": "file:///a.clean.wav", "duration_s": "12.5"}),
    ("denoise", {"denoised_uri": "file:///a.clean.wav", "duration_s": -1}),
    ("denoise", {"denoised_uri": "/no/scheme.wav", "duration_s": 1.0}),
    ("denoise", {"denoised_uri": None, "duration_s": 1.0}),
]
RIGHT: list[tuple[str, dict[str, Any]]] = [
    ("ivr", {"is_ivr": False, "confidence": 0.9}),
    ("stt", {"transcript": ""}),
    ("lid", {"language": "es"}),
    ("denoise", {"denoised_uri": "s3://bucket/b1/call-9.wav", "duration_s": 12}),
]


async def _call(stage: str, body: object) -> CallOutcome:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    async with ModelApiClient(httpx.MockTransport(answer)) as client:
        return await call_model(client, URL, dict(REQUEST), 30.0, stage=stage)


@pytest.mark.parametrize(("stage", "body"), WRONG)
async def test_an_answer_the_contract_refuses_fails_the_call_naming_file_stage_and_host(
    stage: str, body: dict[str, Any]
) -> None:
    outcome = await _call(stage, body)
    assert outcome.response is None
    # A host defect, read like a 5xx: retried, then the file fails (docs/gpu-model-api.md).
    assert (outcome.error_kind, outcome.status) == ("transient", 200)
    error = outcome.error or ""
    assert f"malformed {stage} answer" in error
    assert "10.0.0.7" in error and "b1/call-9.wav" in error


async def test_the_reason_says_which_field_and_what_came() -> None:
    outcome = await _call("ivr", {"is_ivr": "false"})
    assert "is_ivr: Input should be a valid boolean (got 'false')" in (outcome.error or "")


@pytest.mark.parametrize("body", ["not an object", [1, 2], None])
async def test_an_answer_that_is_not_an_object_is_malformed_too(body: object) -> None:
    outcome = await _call("stt", body)
    assert outcome.error_kind == "transient"
    assert "malformed stt answer" in (outcome.error or "")


@pytest.mark.parametrize(("stage", "body"), RIGHT)
async def test_a_contract_answer_passes_and_keeps_the_hosts_extra_fields(
    stage: str, body: dict[str, Any]
) -> None:
    outcome = await _call(stage, body)
    assert outcome.ok and outcome.response == body


@pytest.mark.parametrize(("stage", "body"), WRONG)
def test_the_context_fold_refuses_what_the_client_refuses(stage: Any, body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        exchange.context_after(stage, CONTEXT, body)


def test_false_stays_false_and_an_empty_transcript_stays_empty() -> None:
    assert exchange.context_after("ivr", CONTEXT, {"is_ivr": False}).is_ivr is False
    assert exchange.context_after("stt", CONTEXT, {"transcript": ""}).transcript == ""


def test_an_unknown_stage_is_an_error_not_stt() -> None:
    with pytest.raises(UnknownStage, match="diarize"):
        exchange.context_after("diarize", CONTEXT, {"transcript": "hello"})  # type: ignore[arg-type]
    with pytest.raises(UnknownStage):
        parse_answer("diarize", {"transcript": "hello"})
    with pytest.raises(UnknownStage):
        GpuStageHandler(
            stage="diarize",  # type: ignore[arg-type]
            host="h",
            topics=Topics("c"),
            policy=RetryPolicy(),
            breaker=CircuitBreaker("diarize", "h"),
            call_model=lambda request, timeout_s: _never(),
        )


async def _never() -> CallOutcome:
    raise AssertionError("not called")


def test_every_gpu_stage_has_an_answer_model_whose_fields_are_context_fields() -> None:
    assert set(RESPONSES) == set(GPU_STAGES)
    for model in RESPONSES.values():
        assert set(model.model_fields) <= set(FileContext.model_fields)


async def test_a_host_answering_false_as_a_string_opens_its_circuit_and_the_file_waits() -> None:
    """A malformed answer is the host's defect: the file's retries end on it, the circuit
    opens (`malformed`), and once the host answers properly the file goes on; it never fails."""
    calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json={"is_ivr": "false" if calls <= 4 else False})

    policy = RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0)
    breaker = CircuitBreaker("ivr", "10.0.0.7", BreakerPolicy(first_probe_s=0.01, max_probe_s=0.05))
    async with ModelApiClient(httpx.MockTransport(answer)) as client:
        handler = GpuStageHandler(
            stage="ivr",
            host="10.0.0.7",
            topics=Topics("c"),
            policy=policy,
            breaker=breaker,
            call_model=lambda request, timeout_s: call_model(
                client, URL, request, timeout_s, stage="ivr"
            ),
        )
        event = FileStageCompleted(
            batch_id="b1", file_name="call-9.wav", stage="denoise", context=CONTEXT
        )
        [out] = await handler(event)
    done = out.event
    assert isinstance(done, FileStageCompleted) and done.stage == "ivr", done
    assert calls == 5 and not breaker.is_open
    failed = [a for a in done.attempts if not a.ok]
    assert len(failed) == 4
    assert "malformed ivr answer from http://10.0.0.7:5011/v1/ivr for b1/call-9.wav" in (
        failed[0].error or ""
    )
    assert "is_ivr" in (failed[0].error or "")


def test_check_host_finds_each_stages_port() -> None:
    from cli.check_host import stage_urls

    urls = stage_urls("http://10.0.0.5", list(GPU_STAGES), ["stt=6013"])
    assert urls["stt"] == "http://10.0.0.5:6013"
    assert urls["denoise"] == "http://10.0.0.5:5010"
    assert stage_urls("10.0.0.5:7000", ["lid"], []) == {"lid": "http://10.0.0.5:7000"}
    with pytest.raises(ValueError, match="exactly one --stage"):
        stage_urls("http://10.0.0.5:7000", list(GPU_STAGES), [])
