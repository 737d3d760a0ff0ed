"""POST to a model API (a GPU host's, or an LLM's) and classify what went wrong, if anything.

The GPU and LLM stages read their answers differently but fail alike: a timeout is
transient, a connection that cannot be made is transient and marks the host unreachable, and
a status other than 200 is classified by `shared.retry.classify_status`.
"""

from typing import Any

import httpx

from shared.retry import CallOutcome, classify_status, parse_retry_after


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    timeout_s: float | None = None,
) -> httpx.Response | CallOutcome:
    """The 200 response, or the failed outcome that says why there is none (`timeout_s`:
    this request's timeout instead of the client's)."""
    timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else httpx.Timeout(timeout_s)
    try:
        response = await client.post(url, json=body, headers=headers, timeout=timeout)
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
            status=response.status_code,
        )
    return response
