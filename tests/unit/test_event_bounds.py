"""Fields that steer work have bounds: past one, the file fails for its own content, named."""

import json
from typing import Any

import pytest
from pydantic import ValidationError

from services.distributor.routing import Incoming, route_upload
from services.gpu_stage.handler import GpuStageHandler
from shared.breaker import CircuitBreaker
from shared.events import (
    MAX_CALL_S,
    MAX_TRANSCRIPT,
    FileContext,
    FileFailed,
    FileStageCompleted,
    FileUploaded,
    HostDrained,
)
from shared.retry import CallOutcome, RetryPolicy
from shared.settings import GpuHost
from shared.topics import Topics

TOPICS = Topics("c")
HUGE = "9" * 400


def _upload(duration: str) -> bytes:
    body = json.dumps(
        {"type": "FileUploaded", "batch_id": "b", "file_name": "f.wav", "audio_uri": "file:///a"}
    )
    return (body[:-1] + f', "duration_s": {duration}}}').encode()


@pytest.mark.parametrize("duration", [HUGE, "1e300", "1e400", '"NaN"', "-1"])
def test_an_upload_with_a_duration_past_its_bound_fails_that_file_naming_the_field(
    duration: str,
) -> None:
    with pytest.raises(ValidationError):
        FileUploaded.model_validate_json(_upload(duration))
    [out] = route_upload(
        Incoming("c.uploads", 0, 0, b"b", _upload(duration)), [GpuHost(ip="h")], TOPICS
    )
    # Never routed (so it never jumps a host's queue or waits on an endless timeout).
    assert out.topic == TOPICS.failed and isinstance(out.event, FileFailed)
    assert (out.event.batch_id, out.event.file_name, out.event.stage) == (
        "b",
        "f.wav",
        "distribute",
    )
    assert "duration_s" in out.event.error and out.event.error_kind == "permanent"


def test_free_text_has_bounds() -> None:
    with pytest.raises(ValidationError, match="file_name"):
        FileUploaded(batch_id="b", file_name="x" * 4097, audio_uri="file:///a")
    with pytest.raises(ValidationError, match="audio_uri"):
        FileUploaded(batch_id="b", file_name="f", audio_uri="file:///" + "a" * 9000)
    with pytest.raises(ValidationError, match="transcript"):
        FileContext(audio_uri="file:///a", transcript="w" * (MAX_TRANSCRIPT + 1))
    with pytest.raises(ValidationError, match="host"):
        HostDrained(host="h" * 256)
    FileUploaded(batch_id="b", file_name="x" * 4096, audio_uri="file:///a", duration_s=MAX_CALL_S)


def test_the_bounds_are_in_the_published_schema() -> None:
    schema = FileUploaded.model_json_schema()["properties"]
    assert schema["file_name"]["maxLength"] == 4096
    duration = schema["duration_s"]["anyOf"][0]
    assert duration["maximum"] == MAX_CALL_S and "orders a host's calls" in duration["description"]
    context = FileContext.model_json_schema()["properties"]
    assert context["transcript"]["anyOf"][0]["maxLength"] == MAX_TRANSCRIPT


def _handler(stage: str, answer: dict[str, Any]) -> GpuStageHandler:
    async def call(request: dict[str, Any], timeout_s: float) -> CallOutcome:
        return CallOutcome(response=answer)

    return GpuStageHandler(
        stage=stage,  # type: ignore[arg-type]
        host="h",
        topics=TOPICS,
        policy=RetryPolicy(max_attempts=1),
        breaker=CircuitBreaker(stage, "h"),
        call_model=call,
    )


@pytest.mark.parametrize(
    ("stage", "answer", "field"),
    [
        ("denoise", {"denoised_uri": "file:///c.wav", "duration_s": int(HUGE)}, "duration_s"),
        ("denoise", {"denoised_uri": "file:///c.wav", "duration_s": 1e300}, "duration_s"),
        ("stt", {"transcript": "w" * (MAX_TRANSCRIPT + 1)}, "transcript"),
    ],
)
async def test_a_model_answer_past_a_bound_fails_the_file_naming_the_field(
    stage: str, answer: dict[str, Any], field: str
) -> None:
    before = {"denoise": "distribute", "stt": "triage"}[stage]
    event = FileStageCompleted(
        batch_id="b",
        file_name="f.wav",
        stage=before,
        context=FileContext(audio_uri="file:///a.wav", host="h"),
    )
    [out] = await _handler(stage, answer)(event)
    assert isinstance(out.event, FileFailed) and out.event.error_kind == "permanent"
    assert f"malformed {stage} answer" in out.event.error and field in out.event.error
