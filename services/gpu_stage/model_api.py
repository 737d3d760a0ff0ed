"""HTTP client of a GPU host's model API (one port per stage)."""

import httpx

from shared.retry import CallOutcome, classify_status, parse_retry_after


def stage_url(host: str, port: int, stage: str) -> str:
    return f"http://{host}:{port}/v1/{stage}"


async def call_model(
    client: httpx.AsyncClient, url: str, request: dict[str, object]
) -> CallOutcome:
    try:
        response = await client.post(url, json=request)
    except httpx.TimeoutException as exc:
        return CallOutcome(error_kind="transient", error=f"timeout calling {url}: {exc!r}")
    except httpx.TransportError as exc:
        return CallOutcome(
            error_kind="transient", error=f"cannot reach {url}: {exc!r}", unreachable=True
        )
    if response.status_code == 200:
        try:
            body = response.json()
        except ValueError:
            return CallOutcome(error_kind="transient", error=f"{url} answered non-JSON")
        if not isinstance(body, dict):
            return CallOutcome(error_kind="transient", error=f"{url} answered {type(body)}")
        return CallOutcome(response=body)
    return CallOutcome(
        error_kind=classify_status(response.status_code),
        error=f"HTTP {response.status_code} from {url}: {response.text[:500]}",
        retry_after_s=parse_retry_after(response.headers.get("retry-after")),
    )
