"""The OpenAI-compatible LLM endpoint over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from simulator import Simulator
from simulator.testing import running_simulator

PROMPT = [
    {
        "role": "system",
        "content": "You analyse support calls.\n"
        "Return JSON with keys: summary, sentiment, topics, risk_flags, score, disposition",
    },
    {"role": "user", "content": "File b1/call-7.wav\nTranscript: my invoice is wrong again"},
]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator() as s:
        yield s


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


def chat(messages: list[dict[str, str]] = PROMPT, **extra: object) -> dict[str, object]:
    return {"model": "qwen2.5-7b", "messages": messages, "temperature": 0, **extra}


async def test_completion_has_openai_shape_and_requested_keys(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    resp = await client.post(sim.llm_url, json=chat())
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["object"] == "chat.completion" and data["model"] == "qwen2.5-7b"
    assert data["id"].startswith("chatcmpl-") and isinstance(data["created"], int)
    (choice,) = data["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = json.loads(choice["message"]["content"])
    assert list(content) == ["summary", "sentiment", "topics", "risk_flags", "score", "disposition"]
    assert "invoice" in content["summary"]
    assert content["sentiment"] in {"positive", "neutral", "negative"}
    assert isinstance(content["topics"], list) and isinstance(content["risk_flags"], list)
    assert 0 <= content["score"] <= 100
    assert content["disposition"] in {"resolved", "escalated", "callback"}
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    again = await client.post(sim.llm_url, json=chat())
    assert again.json()["choices"][0]["message"]["content"] == choice["message"]["content"]
    assert sim.stats()["llm"]["calls"] == {"File b1/call-7.wav": 2}


async def test_invalid_requests_are_400(sim: Simulator, client: httpx.AsyncClient) -> None:
    for bad in ({"model": "m"}, {"model": "m", "messages": []}, {"messages": [{"content": "x"}]}):
        resp = await client.post(sim.llm_url, json=bad)
        assert resp.status_code == 400
        assert resp.json()["error"]["type"] == "invalid_request_error"
    assert (await client.post(sim.llm_url, content=b"{")).status_code == 400


async def test_injected_faults(sim: Simulator, client: httpx.AsyncClient) -> None:
    await sim.set_llm_faults(error_rate=1.0)
    assert (await client.post(sim.llm_url, json=chat())).status_code == 503

    await sim.set_llm_faults(error_rate=0.0, rate_limit_rate=1.0, retry_after_s=2)
    limited = await client.post(sim.llm_url, json=chat())
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"

    await sim.set_llm_faults(rate_limit_rate=0.0, malformed_rate=1.0)
    malformed = await client.post(sim.llm_url, json=chat())
    assert malformed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed.json()["choices"][0]["message"]["content"])
    assert sim.stats()["llm"]["responses"] == {"503": 1, "429": 1, "200": 1}


async def test_max_concurrency_seen(sim: Simulator, client: httpx.AsyncClient) -> None:
    await sim.set_llm_faults(latency_s=0.1, latency_scale=1.0)
    prompts = [
        [{"role": "user", "content": f"call {i}\nReturn JSON with keys: score"}] for i in range(5)
    ]
    responses = await asyncio.gather(*(client.post(sim.llm_url, json=chat(p)) for p in prompts))
    assert [r.status_code for r in responses] == [200] * 5
    llm = sim.stats()["llm"]
    assert llm["max_concurrency_seen"] == 5
    assert llm["calls"] == {f"call {i}": 1 for i in range(5)}
