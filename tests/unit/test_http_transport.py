"""shared.http_transport against a real aiohttp server in this process (127.0.0.1, ephemeral
ports): every behaviour is checked with httpx's own transport too, so the assertion is that
the aiohttp transport behaves as httpx does (statuses, headers, bodies, errors, timeouts)."""

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import pytest
from aiohttp import web

from shared.http_transport import AiohttpTransport, HttpTransportName, model_api_transport
from tests.kafka_helpers import wait_until

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK = "127.0.0.1"


@asynccontextmanager
async def serving(routes: dict[str, Handler]) -> AsyncIterator[str]:
    """An aiohttp app on an ephemeral loopback port; yields its base URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    try:
        yield f"http://{LOOPBACK}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture(params=["aiohttp", "httpx"])
def transport_name(request: pytest.FixtureRequest) -> HttpTransportName:
    name: HttpTransportName = request.param
    return name


def client(
    name: HttpTransportName, *, timeout: float = 5.0, max_connections: int = 10
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=10)
    return httpx.AsyncClient(timeout=timeout, transport=model_api_transport(name, limits))


@contextmanager
def unused_port() -> Iterator[int]:
    """A loopback port that nothing listens on (held bound, not listening: refused)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        yield sock.getsockname()[1]


def test_the_setting_picks_the_transport() -> None:
    limits = httpx.Limits(max_connections=3)
    assert isinstance(model_api_transport("aiohttp", limits), AiohttpTransport)
    assert isinstance(model_api_transport("httpx", limits), httpx.AsyncHTTPTransport)


def test_building_the_transport_opens_nothing_outside_a_loop() -> None:
    # Built where no event loop runs (as a service's settings are read): nothing to bind.
    transport = AiohttpTransport(httpx.Limits(max_connections=3))
    assert transport._session is None


async def test_status_headers_and_body_and_the_request_as_sent(
    transport_name: HttpTransportName,
) -> None:
    seen: dict[str, object] = {}

    async def echo(request: web.Request) -> web.Response:
        seen["method"] = request.method
        seen["path_qs"] = request.raw_path
        seen["headers"] = list(request.raw_headers)
        seen["body"] = await request.read()
        response = web.json_response({"denoised_uri": "file:///x.den.wav"}, status=201)
        response.headers.add("X-Many", "one")
        response.headers.add("X-Many", "two")
        return response

    async with serving({"/v1/denoise": echo}) as url, client(transport_name) as http:
        response = await http.post(
            url + "/v1/denoise",
            params={"file": "call 1.wav"},
            json={"batch_id": "b", "file_name": "call_1.wav"},
            headers={"Authorization": "Bearer k"},
        )
        assert response.status_code == 201
        assert response.reason_phrase == "Created"
        assert response.http_version == "HTTP/1.1"
        assert response.json() == {"denoised_uri": "file:///x.den.wav"}
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers.get_list("x-many") == ["one", "two"]
    assert seen["method"] == "POST"
    assert seen["path_qs"] == "/v1/denoise?file=call+1.wav"
    assert json.loads(seen["body"]) == {"batch_id": "b", "file_name": "call_1.wav"}  # type: ignore[arg-type]
    # Exactly httpx's headers, in its order and case: aiohttp adds and changes nothing.
    sent = response.request.headers.raw
    assert seen["headers"] == sent
    assert (b"Content-Type", b"application/json") in sent
    assert any(name == b"User-Agent" and value.startswith(b"python-httpx") for name, value in sent)


async def test_a_body_without_content_type_gets_none(transport_name: HttpTransportName) -> None:
    seen: dict[str, object] = {}

    async def echo(request: web.Request) -> web.Response:
        seen["content_type"] = request.headers.get("Content-Type")
        seen["body"] = await request.read()
        return web.Response(status=204)

    async with serving({"/raw": echo}) as url, client(transport_name) as http:
        response = await http.put(url + "/raw", content=b"\x00raw bytes")
        assert response.status_code == 204
        assert response.content == b""
    assert seen == {"content_type": None, "body": b"\x00raw bytes"}


async def test_a_host_name_is_resolved(transport_name: HttpTransportName) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=request.host)

    async with serving({"/hi": hello}) as url, client(transport_name) as http:
        by_name = url.replace(LOOPBACK, "localhost")
        response = await http.get(by_name + "/hi")
        assert response.text == by_name.removeprefix("http://")


@pytest.mark.parametrize("status", [429, 503])
async def test_busy_and_failing_hosts_answer_with_retry_after(
    transport_name: HttpTransportName, status: int
) -> None:
    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=status, text="busy", headers={"Retry-After": "2"})

    async with serving({"/v1/stt": busy}) as url, client(transport_name) as http:
        response = await http.post(url + "/v1/stt", json={})
        assert response.status_code == status
        assert response.headers.get("retry-after") == "2"
        assert response.text == "busy"


async def test_a_compressed_body_is_decoded_once(transport_name: HttpTransportName) -> None:
    payload = json.dumps({"transcript": "hello " * 200}).encode()

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(payload),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async with serving({"/gz": gzipped}) as url, client(transport_name) as http:
        response = await http.get(url + "/gz")
        assert response.content == payload


async def test_redirects_are_httpx_s_to_follow(transport_name: HttpTransportName) -> None:
    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": "/there"})

    async def there(request: web.Request) -> web.Response:
        return web.Response(text="arrived")

    async with serving({"/here": moved, "/there": there}) as url, client(transport_name) as http:
        assert (await http.get(url + "/here")).status_code == 307
        followed = await http.get(url + "/here", follow_redirects=True)
        assert (followed.status_code, followed.text) == (200, "arrived")
        assert [r.status_code for r in followed.history] == [307]


async def test_a_large_body_streams_in_chunks(transport_name: HttpTransportName) -> None:
    chunk = b"x" * 65_536

    async def slow_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(16):
            await response.write(chunk)
            await asyncio.sleep(0.005)
        await response.write_eof()
        return response

    async with (
        serving({"/big": slow_stream}) as url,
        client(transport_name, max_connections=1) as http,
    ):
        async with http.stream("GET", url + "/big") as response:
            parts = [part async for part in response.aiter_raw()]
        assert b"".join(parts) == chunk * 16
        assert len(parts) > 1, "the body was handed over in pieces, as it arrived"
        # The connection went back to the pool: the next request works on a pool of one.
        assert (await http.get(url + "/big")).content == chunk * 16


async def test_a_refused_connection_is_a_connect_error(transport_name: HttpTransportName) -> None:
    with unused_port() as port:
        async with client(transport_name) as http:
            with pytest.raises(httpx.ConnectError) as caught:
                await http.post(f"http://{LOOPBACK}:{port}/v1/denoise", json={})
    assert caught.value.request.url.port == port


async def test_a_connect_that_hangs_is_a_connect_timeout(
    transport_name: HttpTransportName,
) -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, so connects hang.
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex((LOOPBACK, port))
                fillers.append(filler)
            async with client(transport_name) as http:
                with pytest.raises(httpx.ConnectTimeout):
                    await http.get(
                        f"http://{LOOPBACK}:{port}/", timeout=httpx.Timeout(5.0, connect=0.3)
                    )
        finally:
            for filler in fillers:
                filler.close()


async def test_a_server_slower_than_the_read_timeout_is_a_read_timeout(
    transport_name: HttpTransportName,
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["s"]))
        return web.Response(text="late")

    async with (
        serving({"/slow": slow}) as url,
        client(transport_name, timeout=5.0, max_connections=1) as http,
    ):
        # The request's own timeout wins over the client's.
        with pytest.raises(httpx.ReadTimeout):
            await http.get(url + "/slow", params={"s": "2"}, timeout=0.2)
        # The failed request gave its connection back: a pool of one still serves.
        answer = await http.get(url + "/slow", params={"s": "0.05"}, timeout=2.0)
        assert answer.text == "late"


async def test_a_body_that_stalls_is_a_read_timeout(transport_name: HttpTransportName) -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"partial")
        await asyncio.sleep(3)
        return response

    async with serving({"/stalls": stalls}) as url, client(transport_name) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(url + "/stalls", timeout=0.3)


async def test_no_free_connection_within_the_pool_timeout_is_a_pool_timeout(
    transport_name: HttpTransportName,
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="done")

    async with (
        serving({"/held": held}) as url,
        client(transport_name, max_connections=1) as http,
    ):
        first = asyncio.create_task(http.get(url + "/held"))
        await asyncio.wait_for(arrived.wait(), 5)  # the first holds the only connection
        with pytest.raises(httpx.PoolTimeout):
            await http.get(url + "/held", timeout=httpx.Timeout(5.0, pool=0.2))
        release.set()
        assert (await first).text == "done"
        # Slots come back after answers and after errors: the pool of one still serves.
        for _ in range(3):
            assert (await http.get(url + "/held")).text == "done"


async def test_a_cancelled_request_gives_its_connection_back(
    transport_name: HttpTransportName,
) -> None:
    arrived = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        if request.query.get("hold"):
            arrived.set()
            await asyncio.sleep(10)
        return web.Response(text="free")

    async with (
        serving({"/held": held}) as url,
        client(transport_name, max_connections=1) as http,
    ):
        stuck = asyncio.create_task(http.get(url + "/held", params={"hold": "1"}))
        await asyncio.wait_for(arrived.wait(), 5)
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        answer = await http.get(url + "/held", timeout=httpx.Timeout(5.0, pool=2.0))
        assert answer.text == "free"


async def test_the_pool_bounds_requests_in_flight(transport_name: HttpTransportName) -> None:
    in_flight = peak = 0

    async def counted(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.2)  # long enough for all three to overlap
        in_flight -= 1
        return web.Response(text="ok")

    async with (
        serving({"/c": counted}) as url,
        client(transport_name, max_connections=3) as http,
    ):
        answers = await asyncio.gather(*(http.get(url + "/c") for _ in range(12)))
    assert [a.text for a in answers] == ["ok"] * 12
    assert peak == 3


async def test_a_server_that_hangs_up_without_answering_is_a_remote_protocol_error(
    transport_name: HttpTransportName,
) -> None:
    async def hang_up(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(1)
        return web.Response(text="never sent")

    async with serving({"/bye": hang_up}) as url, client(transport_name) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url + "/bye", json={})


async def test_a_server_that_hangs_up_mid_body_is_a_remote_protocol_error(
    transport_name: HttpTransportName,
) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100000"})
        await response.prepare(request)
        await response.write(b"partial")
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return response

    async with serving({"/cut": cut}) as url, client(transport_name) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(url + "/cut")


async def test_a_reset_connection_is_a_read_error(transport_name: HttpTransportName) -> None:
    async def reset(request: web.Request) -> web.Response:
        assert request.transport is not None
        sock = request.transport.get_extra_info("socket")
        # Linger 0: close sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        request.transport.abort()
        await asyncio.sleep(1)
        return web.Response(text="never sent")

    async with serving({"/reset": reset}) as url, client(transport_name) as http:
        with pytest.raises(httpx.ReadError):
            await http.post(url + "/reset", json={})


async def test_aclose_closes_the_connections() -> None:
    connections: list[asyncio.BaseTransport] = []

    async def remember(request: web.Request) -> web.Response:
        assert request.transport is not None
        connections.append(request.transport)
        return web.Response(text="ok")

    async with serving({"/r": remember}) as url:
        transport = AiohttpTransport(httpx.Limits(max_connections=2))
        async with httpx.AsyncClient(transport=transport) as http:
            for _ in range(3):
                assert (await http.get(url + "/r")).text == "ok"
            assert not connections[0].is_closing(), "a kept-alive connection stays open"
        await wait_until(
            lambda: all(c.is_closing() for c in connections), timeout_s=5, what="closed"
        )
        with pytest.raises(RuntimeError):
            await transport.handle_async_request(httpx.Request("GET", url + "/r"))
