"""Client of an OpenAI-compatible `POST /chat/completions` (vLLM, TGI, Ollama, hosted)."""

import json
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from shared.retry import CallOutcome, classify_status, parse_retry_after


async def complete(
    client: httpx.AsyncClient,
    base_url: str,
    api_key: str,
    model: str,
    messages: list[dict[str, str]],
    answer: type[BaseModel],
) -> CallOutcome:
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model, "messages": messages, "temperature": 0}
    try:
        response = await client.post(url, json=body, headers=headers)
    except httpx.TimeoutException as exc:
        return CallOutcome(error_kind="transient", error=f"timeout calling {url}: {exc!r}")
    except httpx.TransportError as exc:
        return CallOutcome(
            error_kind="transient", error=f"cannot reach {url}: {exc!r}", unreachable=True
        )
    if response.status_code != 200:
        return CallOutcome(
            error_kind=classify_status(response.status_code),
            error=f"HTTP {response.status_code} from {url}: {response.text[:500]}",
            retry_after_s=parse_retry_after(response.headers.get("retry-after")),
        )
    return parse_answer(response, answer)


def parse_answer(response: httpx.Response, answer: type[BaseModel]) -> CallOutcome:
    """A malformed answer is transient: a model sampled again may well answer properly."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return CallOutcome(
            error_kind="transient", error=f"not a chat completion: {response.text[:500]}"
        )
    try:
        parsed: Any = json.loads(_strip_fences(content))
        valid = answer.model_validate(parsed)
    except (ValueError, ValidationError) as exc:
        return CallOutcome(
            error_kind="transient",
            error=f"malformed answer ({type(exc).__name__}): {str(exc)[:300]}",
            response={"raw_answer": str(content)[:4000]},
        )
    return CallOutcome(response=valid.model_dump())


def _strip_fences(content: str) -> str:
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("{") :] if "{" in text else text
    return text
