"""An httpx transport that sends requests with aiohttp's client, for the model and LLM APIs.

The services speak httpx, but httpx's own transport (httpcore, anyio, h11) costs several
times aiohttp's CPU per request, and a file makes six model calls: measurements, and why
this is ours rather than the `httpx-aiohttp` package, in bench/FINDINGS.md (proposals 2, 7).

What it keeps of httpx's behaviour, so the error classification (shared/model_http.py) sees the
same errors:
- errors: a refused or failed connect is `httpx.ConnectError`; a connect that outlives the
  `connect` timeout `httpx.ConnectTimeout`; no byte from the server within `read`
  `httpx.ReadTimeout`; no free connection within `pool` `httpx.PoolTimeout`; a server that
  closes without (or in the middle of) a response `httpx.RemoteProtocolError`; a reset
  connection `httpx.ReadError`.
- the request's timeout extension (`httpx.Timeout`), per request.
- the pool: at most `limits.max_connections` requests hold a connection at once (the rest
  wait up to the `pool` timeout); idle connections close after `limits.keepalive_expiry`.
- the bytes: the request goes out with exactly httpx's headers (aiohttp adds none of its
  own), redirects and cookies are left to httpx, and the body comes back undecoded and
  streamed, so `Content-Encoding`, `client.stream()` and `Retry-After` work as with httpx.

Differences: HTTP/1.1 only (no HTTP/2), request bodies are buffered before sending, and the
`write` timeout is not enforced on its own (aiohttp has none; the `read` timer starts once
the request is written): model requests are a few hundred bytes, which the kernel takes at
once. A timeout of 5 s or more fires on the next whole second of the loop's clock, as
aiohttp rounds its timers up (`ceil_threshold`). The services send through it directly
(`shared.model_http.ModelApiClient`), so no proxy from the environment is used: model APIs are
reached at the address configured.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Literal, NoReturn

import aiohttp
import httpx
from yarl import URL

HttpTransportName = Literal["aiohttp", "httpx"]

# httpx's request always carries these; aiohttp must not add its own or override them.
_LEFT_TO_HTTPX = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")


def model_api_transport(name: HttpTransportName, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """The transport a service's model or LLM API client uses (`HTTP_TRANSPORT`)."""
    if name == "httpx":
        return httpx.AsyncHTTPTransport(limits=limits)
    return AiohttpTransport(limits=limits)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends an httpx request through one aiohttp `ClientSession`, created on first use."""

    def __init__(self, limits: httpx.Limits | None = None) -> None:
        # httpx's own default pool when none is given.
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._slots = (
            asyncio.Semaphore(limits.max_connections)
            if limits.max_connections is not None
            else None
        )
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}
        self._urls: dict[str, URL] = {}
        self._closed = False

    def _open_session(self) -> aiohttp.ClientSession:
        # Created inside the running loop on the first request: nothing connects, and no
        # loop is bound, when a client is built.
        if self._closed:
            raise RuntimeError("the transport was closed")
        keepalive = self._limits.keepalive_expiry
        connector = aiohttp.TCPConnector(
            # The pool limit is ours (self._slots): its wait is the `pool` timeout, which
            # aiohttp's own limit would fold into the connect timeout.
            limit=0,
            keepalive_timeout=keepalive if keepalive is not None else 3600.0,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_LEFT_TO_HTTPX,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),
        )
        return self._session

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        spec = request.extensions.get("timeout", {})
        key = (spec.get("connect"), spec.get("read"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            if len(self._timeouts) >= 64:  # per-request timeouts must not grow memory
                self._timeouts.clear()
            # `connect` of aiohttp would also count the wait for a pool slot; sock_connect
            # is the TCP connect alone, as httpx's `connect`.
            timeout = aiohttp.ClientTimeout(
                total=None, connect=None, sock_connect=key[0], sock_read=key[1]
            )
            self._timeouts[key] = timeout
        return timeout

    def _url(self, url: httpx.URL) -> URL:
        # A service calls a handful of URLs; parsing each once saves CPU on every request.
        text = str(url)
        parsed = self._urls.get(text)
        if parsed is None:
            if len(self._urls) >= 1024:
                self._urls.clear()
            # httpx has already percent-encoded it: aiohttp must send it as it is.
            parsed = self._urls[text] = URL(text, encoded=True)
        return parsed

    async def _take_slot(self, request: httpx.Request) -> None:
        slots = self._slots
        if slots is None:
            return
        if not slots.locked():
            await slots.acquire()  # free: returns at once, without a timer
            return
        pool_timeout = request.extensions.get("timeout", {}).get("pool")
        try:
            async with asyncio.timeout(pool_timeout):
                await slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout(
                f"no free connection within {pool_timeout} s", request=request
            ) from exc

    def _give_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open_session()
        content = await request.aread()
        await self._take_slot(request)
        try:
            response = await session.request(
                request.method,
                self._url(request.url),
                headers=_wire_headers(request.headers),
                data=content or None,
                allow_redirects=False,
                timeout=self._timeout(request),
            )
        except BaseException as exc:
            self._give_slot()
            _raise_as_httpx_error(exc, request)
        body: httpx.AsyncByteStream
        if response.content.is_eof():
            # The whole body came with the headers (a model's answer usually does): hand it
            # over as bytes and free the connection now, without a stream to drain.
            body = httpx.ByteStream(response.content.read_nowait())
            response.release()
            self._give_slot()
        else:
            body = _ResponseBody(response, request, self._give_slot)
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=body,
            extensions={
                "http_version": _http_version(response.version),
                "reason_phrase": (response.reason or "").encode("ascii", "replace"),
            },
        )

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


def _wire_headers(headers: httpx.Headers) -> list[tuple[str, str]]:
    """The request's headers as httpx would send them: names in their case, in order."""
    try:
        return [(name.decode(), value.decode()) for name, value in headers.raw]
    except UnicodeDecodeError:
        return headers.multi_items()  # httpx's own decoding of odd bytes


def _http_version(version: aiohttp.HttpVersion | None) -> bytes:
    return b"HTTP/%d.%d" % (version.major, version.minor) if version else b"HTTP/1.1"


class _ResponseBody(httpx.AsyncByteStream):
    """The body as aiohttp receives it; closing it frees the connection's pool slot."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        request: httpx.Request,
        give_slot: Callable[[], None],
    ) -> None:
        self._response = response
        self._request = request
        self._give_slot: Callable[[], None] | None = give_slot

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except Exception as exc:
            _raise_as_httpx_error(exc, self._request)

    async def aclose(self) -> None:
        # A body read to its end has already put the connection back in aiohttp's pool;
        # one left unread closes the connection, as httpx does.
        self._response.release()
        if self._give_slot is not None:
            give_slot, self._give_slot = self._give_slot, None
            give_slot()


def _raise_as_httpx_error(exc: BaseException, request: httpx.Request) -> NoReturn:
    """Raise what httpx's own transport raises for the same failure."""
    kind = _httpx_error_kind(exc)
    if kind is None:
        raise exc
    raise kind(str(exc) or type(exc).__name__, request=request) from exc


def _httpx_error_kind(exc: BaseException) -> type[httpx.TransportError] | None:
    if not isinstance(exc, Exception) or isinstance(exc, httpx.HTTPError):
        return None  # cancellation and the like pass unchanged
    for aiohttp_kinds, httpx_kind in _ERROR_KINDS:
        if isinstance(exc, aiohttp_kinds):
            return httpx_kind
    return None  # a bug of ours or aiohttp's: not an HTTP failure, so not retried as one


# In order: the first match wins (ConnectionTimeoutError is also a ServerTimeoutError,
# ClientConnectorError also a ClientConnectionError, and every one of them a ClientError).
_ERROR_KINDS: tuple[tuple[tuple[type[BaseException], ...], type[httpx.TransportError]], ...] = (
    ((aiohttp.ConnectionTimeoutError,), httpx.ConnectTimeout),
    ((aiohttp.ServerTimeoutError, TimeoutError), httpx.ReadTimeout),
    ((aiohttp.ClientConnectorError,), httpx.ConnectError),
    (
        (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError),
        httpx.RemoteProtocolError,
    ),
    ((aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError), httpx.UnsupportedProtocol),
    ((aiohttp.ClientConnectionError, OSError), httpx.ReadError),
    ((aiohttp.ClientError,), httpx.TransportError),
)
