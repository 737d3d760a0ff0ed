"""`python -m bench.http_client_cost`: CPU per request of the HTTP clients a stage could use.

A development tool behind a proposal in bench/FINDINGS.md: the model-API client is the
largest CPU cost per file in gpu_stage and llm_stage. It serves a tiny JSON endpoint from a
separate process (aiohttp, on the bench's denoise address, so do not run it during a bench
run) and times, in this process only, httpx on its own transport with gpu_stage's pool and
with a pool the size of the in-flight limit, httpx on shared.http_transport's aiohttp
transport, the services' `ModelApiClient` (httpx requests straight to that transport, without
httpx's client layer), and aiohttp's client alone; with 4 requests in flight,
then 16 (httpcore's pool costs more per request the more connections it holds).
"""

import asyncio
import importlib.util
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

HOST, PORT = "127.0.2.2", 45010
URL = f"http://{HOST}:{PORT}/v1/denoise"
REQUESTS = 4000
IN_FLIGHT = (4, 16)  # a few, and what a gpu_stage process holds: 4 stages x capacity 4
BODY = {"batch_id": "b", "file_name": "call_000001.wav", "audio_uri": "file:///tmp/x.wav"}


def serve() -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"denoised_uri": "file:///tmp/x.den.wav", "duration_s": 2.0})

    app = web.Application()
    app.router.add_post("/v1/denoise", handle)
    web.run_app(app, host=HOST, port=PORT, print=None)


async def cpu_per_request(call: Callable[[], Awaitable[None]], in_flight: int) -> float:
    for _ in range(50):  # connections open, code paths warm
        await call()
    limit = asyncio.Semaphore(in_flight)

    async def limited() -> None:
        async with limit:
            await call()

    started = time.process_time()
    await asyncio.gather(*(limited() for _ in range(REQUESTS)))
    return (time.process_time() - started) / REQUESTS


async def measure(in_flight: int) -> dict[str, float]:
    import aiohttp
    import httpx

    results = {}
    for name, limits in (
        (
            "httpx, gpu_stage's pool (1000 connections)",
            httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        ),
        ("httpx, pool of 8", httpx.Limits(max_connections=8, max_keepalive_connections=8)),
    ):
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:

            async def with_httpx(client: httpx.AsyncClient = client) -> None:
                (await client.post(URL, json=BODY)).json()

            results[name] = await cpu_per_request(with_httpx, in_flight)
    # What gpu_stage and llm_stage use by default (HTTP_TRANSPORT=aiohttp).
    from shared.http_transport import AiohttpTransport

    gpu_pool = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    transport = AiohttpTransport(limits=gpu_pool)
    async with httpx.AsyncClient(timeout=30, transport=transport) as client:

        async def with_transport(client: httpx.AsyncClient = client) -> None:
            (await client.post(URL, json=BODY)).json()

        name = "httpx on shared.http_transport (aiohttp)"
        results[name] = await cpu_per_request(with_transport, in_flight)
    # What they send through since issue 10: httpx requests, no client layer.
    from shared.model_http import ModelApiClient, post_json

    async with ModelApiClient(AiohttpTransport(limits=gpu_pool), 30) as model_api:

        async def with_model_api() -> None:
            response = await post_json(model_api, URL, BODY)
            assert isinstance(response, httpx.Response), response
            response.json()

        name = "shared.model_http.ModelApiClient (services)"
        results[name] = await cpu_per_request(with_model_api, in_flight)
    async with aiohttp.ClientSession() as session:

        async def with_aiohttp() -> None:
            async with session.post(URL, json=BODY) as response:
                await response.json()

        results["aiohttp"] = await cpu_per_request(with_aiohttp, in_flight)
    return results


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        serve()
        return
    server = subprocess.Popen([sys.executable, "-m", "bench.http_client_cost", "serve"])
    try:
        time.sleep(1.5)  # a dev tool: the server is up well within this
        if importlib.util.find_spec("sniffio") is not None:
            note = "sniffio importable"
        else:
            note = "sniffio NOT importable (httpcore retries the import on every request)"
        for in_flight in IN_FLIGHT:
            print(f"{REQUESTS} requests, {in_flight} in flight; {note}")
            for name, seconds in asyncio.run(measure(in_flight)).items():
                print(f"  {name:45s} {seconds * 1e6:6.0f} us CPU per request")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
