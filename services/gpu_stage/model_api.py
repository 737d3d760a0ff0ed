"""HTTP client of a GPU host's model API (one port per stage)."""

import httpx

from shared.model_http import post_json
from shared.retry import CallOutcome


def stage_url(host: str, port: int, stage: str) -> str:
    return f"http://{host}:{port}/v1/{stage}"


async def call_model(
    client: httpx.AsyncClient, url: str, request: dict[str, object], timeout_s: float
) -> CallOutcome:
    response = await post_json(client, url, request, timeout_s=timeout_s)
    if isinstance(response, CallOutcome):
        return response
    try:
        body = response.json()
    except ValueError:
        return CallOutcome(error_kind="transient", error=f"{url} answered non-JSON")
    if not isinstance(body, dict):
        return CallOutcome(error_kind="transient", error=f"{url} answered {type(body)}")
    return CallOutcome(response=body)
