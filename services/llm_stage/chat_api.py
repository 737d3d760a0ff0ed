"""Client of an OpenAI-compatible `POST /chat/completions` (vLLM, TGI, Ollama, hosted)."""

import json
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from shared.model_http import PROBE_PASSES, ModelApiClient, post_json
from shared.retry import CallOutcome


async def complete(
    client: ModelApiClient,
    base_url: str,
    api_key: str,
    model: str,
    messages: list[dict[str, str]],
    answer: type[BaseModel],
    max_tokens: int | None = None,
    user: str | None = None,
) -> CallOutcome:
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body: dict[str, Any] = {"model": model, "messages": messages, "temperature": 0}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if user is not None:
        body["user"] = user
    response = await post_json(client, url, body, headers)
    if isinstance(response, CallOutcome):
        return response
    return parse_answer(response, answer)


async def probe(client: ModelApiClient, base_url: str, api_key: str) -> bool:
    """Whether the breaker may make its trial call: the API answers `GET /models` with
    these credentials (cheap, and it fails as chat does on a wrong key or a dead server),
    or has no such route (404, 405: the trial call decides)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = await client.request("GET", base_url.rstrip("/") + "/models", headers=headers)
    except httpx.HTTPError:
        return False
    return response.status_code in PROBE_PASSES


def parse_answer(response: httpx.Response, answer: type[BaseModel]) -> CallOutcome:
    """A malformed answer is transient: a model sampled again may well answer properly."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return CallOutcome(
            error_kind="transient",
            error=f"not a chat completion: {response.text[:500]}",
            malformed=True,
            status=response.status_code,
        )
    try:
        parsed: Any = json.loads(_strip_fences(content))
        valid = answer.model_validate(parsed)
    except (ValueError, ValidationError) as exc:
        return CallOutcome(
            error_kind="transient",
            error=f"malformed answer ({type(exc).__name__}): {str(exc)[:300]}",
            response={"raw_answer": str(content)[:4000]},
            malformed=True,
            status=response.status_code,
        )
    return CallOutcome(response=valid.model_dump())


def _strip_fences(content: str) -> str:
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("{") :] if "{" in text else text
    return text
