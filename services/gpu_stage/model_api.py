"""HTTP client of a GPU host's model API (one port per stage)."""

import httpx
from pydantic import ValidationError

from services.gpu_stage.model_contract import describe, parse_answer
from shared.model_http import PROBE_PASSES, ModelApiClient, post_json
from shared.retry import CallOutcome

# How long the breaker's probe waits for `GET /health` (docs/gpu-model-api.md).
HEALTH_TIMEOUT_S = 5.0


def stage_url(host: str, port: int, stage: str) -> str:
    return f"http://{host}:{port}/v1/{stage}"


def health_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/health"


async def probe(client: ModelApiClient, url: str) -> bool:
    """Whether the circuit breaker may make its trial call: the model server answers its
    health route, or has none (404, 405: the trial call decides). A 200 here never closes
    the circuit by itself: only a call answered about its file does."""
    try:
        response = await client.request("GET", url, timeout_s=HEALTH_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return response.status_code in PROBE_PASSES


def _malformed(stage: str, url: str, request: dict[str, object], why: str) -> CallOutcome:
    """A 200 that breaks the contract is the host's defect, never the file's: retried like a
    5xx, counted against the host's circuit (`defect`), and a file whose retries end on it
    waits for the circuit or fails over, it never fails (docs/gpu-model-api.md, "Accepted
    answers, exactly")."""
    file = f"{request.get('batch_id')}/{request.get('file_name')}"
    return CallOutcome(
        error_kind="transient",
        error=f"malformed {stage} answer from {url} for {file}: {why}",
        status=200,
        defect=True,
    )


async def call_model(
    client: ModelApiClient,
    url: str,
    request: dict[str, object],
    timeout_s: float,
    *,
    stage: str,
) -> CallOutcome:
    """One call; a 200 comes back only when the contract's model for `stage` accepts it."""
    response = await post_json(client, url, request, timeout_s=timeout_s)
    if isinstance(response, CallOutcome):
        return response
    try:
        body = response.json()
    except ValueError:
        return _malformed(stage, url, request, "not JSON")
    if not isinstance(body, dict):
        return _malformed(stage, url, request, f"a JSON {type(body).__name__}, not an object")
    try:
        parse_answer(stage, body)
    except ValidationError as exc:
        return _malformed(stage, url, request, describe(exc))
    return CallOutcome(response=body)
