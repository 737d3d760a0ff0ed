"""Calls to a model API (a GPU host's, or an LLM's), and what went wrong with them, if anything.

The GPU and LLM stages read their answers differently but fail alike: a timeout is
transient, a connection that cannot be made is transient and marks the host unreachable, and
a status other than 200 is classified by `shared.retry.classify_status`.
"""

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from shared.retry import CallOutcome, classify_status, parse_retry_after

# A breaker's probe passes on these: up, or without the probe route (the trial call decides).
PROBE_PASSES = frozenset({200, 404, 405})
# Beside what `httpx.Request` derives itself (Host, Content-Length, Content-Type).
_HEADERS = {"Accept": "application/json", "User-Agent": "cofi"}


class ModelApiClient:
    """Sends httpx requests straight to an httpx transport, without httpx's client layer.

    Model and LLM APIs set no cookies, never redirect and take their key as a plain header,
    so `httpx.AsyncClient` (cookie jar, redirects, auth flow, URL merging) does nothing for
    them, at a CPU cost per request (bench/FINDINGS.md, `python -m bench.http_client_cost`),
    and a file makes six. The requests, the transport and its errors are
    httpx's, so the classification below and `httpx.MockTransport` in tests are unchanged.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport, timeout_s: float = 30.0) -> None:
        self._transport = transport
        self._timeout = httpx.Timeout(timeout_s).as_dict()
        # A service calls a handful of URLs: each is parsed once.
        self._urls: dict[str, httpx.URL] = {}

    async def request(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        """The whole response (its body read); raises what the transport raises."""
        timeout = self._timeout if timeout_s is None else httpx.Timeout(timeout_s).as_dict()
        request = httpx.Request(
            method,
            self._url(url),
            json=body,
            headers={**_HEADERS, **headers} if headers else _HEADERS,
            extensions={"timeout": timeout},
        )
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= 1024:  # URLs built per call must not grow memory
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> "ModelApiClient":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


async def post_json(
    client: ModelApiClient,
    url: str,
    body: dict[str, Any],
    headers: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> httpx.Response | CallOutcome:
    """The 200 response, or the failed outcome that says why there is none (`timeout_s`:
    this request's timeout instead of the client's)."""
    try:
        response = await client.request("POST", url, body, headers, timeout_s)
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
