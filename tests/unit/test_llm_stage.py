import asyncio
import json
from typing import Any

import httpx

from services.llm_stage.answers import Llm1Answer
from services.llm_stage.chat_api import complete
from services.llm_stage.handler import LlmStageHandler
from services.llm_stage.prompting import load_templates
from services.llm_stage.settings import PROMPTS
from shared.breaker import CircuitBreaker
from shared.events import FileContext, FileFailed, FileStageCompleted
from shared.model_http import ModelApiClient
from shared.retry import CallOutcome, RetryPolicy
from shared.stages import LlmStage
from shared.topics import Topics


def _completion(content: str) -> httpx.Response:
    return httpx.Response(
        200, json={"choices": [{"message": {"role": "assistant", "content": content}}]}
    )


async def test_chat_client_validates_the_answer_against_the_stage_schema() -> None:
    answers = iter(
        [
            _completion(json.dumps({"summary": "s", "sentiment": "neutral", "topics": ["a"]})),
            _completion("I think the call went well"),
            httpx.Response(429, headers={"Retry-After": "1"}),
        ]
    )
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return next(answers)

    async with ModelApiClient(httpx.MockTransport(handler)) as client:
        ok = await complete(client, "http://llm/v1", "k", "m", [], Llm1Answer)
        malformed = await complete(client, "http://llm/v1", "k", "m", [], Llm1Answer)
        limited = await complete(client, "http://llm/v1", "k", "m", [], Llm1Answer)
    assert ok.response == {"summary": "s", "sentiment": "neutral", "topics": ["a"]}
    assert malformed.error_kind == "transient"
    assert malformed.response == {"raw_answer": "I think the call went well"}
    assert (limited.error_kind, limited.retry_after_s) == ("transient", 1.0)
    assert seen[0]["model"] == "m"


def _event() -> FileStageCompleted:
    ctx = FileContext(audio_uri="u", host="h", language="en", transcript="hello there")
    return FileStageCompleted(batch_id="b", file_name="f.wav", stage="stt", context=ctx)


async def test_handler_fills_the_template_and_forwards_the_answer() -> None:
    prompts: list[list[dict[str, str]]] = []

    async def chat(stage: LlmStage, messages: list[dict[str, str]], caller: str) -> CallOutcome:
        prompts.append(messages)
        return CallOutcome(response={"summary": "x", "sentiment": "neutral", "topics": []})

    handler = LlmStageHandler(
        stage="llm1",
        topics=Topics("c"),
        template=load_templates(PROMPTS)["llm1"],
        policy=RetryPolicy(),
        chat=chat,
        concurrency=asyncio.Semaphore(1),
        breaker=CircuitBreaker("llm1", None),
    )
    [out] = await handler(_event())
    event = out.event
    assert out.topic == "c.llm2"
    assert isinstance(event, FileStageCompleted)
    assert event.context.llm1 == {"summary": "x", "sentiment": "neutral", "topics": []}
    [system, user] = prompts[0]
    assert "hello there" not in system["content"]
    assert "<transcript>\nhello there\n</transcript>" in user["content"]
    assert "Return JSON with keys: summary, sentiment, topics" in system["content"]


async def test_malformed_answers_are_retried_then_dead_lettered_with_the_raw_answer() -> None:
    async def chat(stage: LlmStage, messages: list[dict[str, str]], caller: str) -> CallOutcome:
        return CallOutcome(
            error_kind="transient", error="malformed answer", response={"raw_answer": "nope"}
        )

    handler = LlmStageHandler(
        stage="llm1",
        topics=Topics("c"),
        template=load_templates(PROMPTS)["llm1"],
        policy=RetryPolicy(max_attempts=3, base_delay_s=0, max_delay_s=0),
        chat=chat,
        concurrency=asyncio.Semaphore(1),
        breaker=CircuitBreaker("llm1", None),
    )
    [out] = await handler(_event())
    event = out.event
    assert out.topic == "c.failed"
    assert isinstance(event, FileFailed)
    assert len(event.attempts) == 3
    assert event.attempts[-1].response == {"raw_answer": "nope"}
