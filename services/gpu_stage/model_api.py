"""HTTP client of a GPU host's model API (one port per stage)."""

import httpx

from shared.model_http import ModelApiClient, post_json
from shared.retry import CallOutcome


def stage_url(host: str, port: int, stage: str) -> str:
    return f"http://{host}:{port}/v1/{stage}"


def health_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/health"


async def probe(client: ModelApiClient, url: str) -> bool:
    """Whether the model server answers its health route (the circuit breaker's probe)."""
    try:
        response = await client.request("GET", url, timeout_s=5.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def call_model(
    client: ModelApiClient, url: str, request: dict[str, object], timeout_s: float
) -> CallOutcome:
    response = await post_json(client, url, request, timeout_s=timeout_s)
    if isinstance(response, CallOutcome):
        return response
    try:
        body = response.json()
    except ValueError:
        return CallOutcome(error_kind="transient", error=f"{url} answered non-JSON", status=200)
    if not isinstance(body, dict):
        return CallOutcome(error_kind="transient", error=f"{url} answered {type(body)}", status=200)
    return CallOutcome(response=body)
