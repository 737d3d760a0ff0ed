"""`cofi check-host` holds GPU hosts to the model API contract over real HTTP: the simulator
passes, and a host that answers what a lenient encoder would (`"is_ivr": "false"`, no
`/health`, 200 for missing audio) fails, with a non-zero exit code."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from cli import check_host
from shared.stages import GPU_STAGES
from simulator import Simulator
from simulator.testing import running_simulator

H2 = "127.0.0.2"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator() as s:
        yield s


def _ports(sim: Simulator) -> list[str]:
    return [f"--port={stage}={sim.config.ports[stage]}" for stage in GPU_STAGES]


async def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = await asyncio.to_thread(check_host.main, argv)
    return code, capsys.readouterr().out


async def test_the_simulator_passes_every_check(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await _run([f"http://{H2}", *_ports(sim)], capsys)
    assert code == 0, out
    assert "FAIL" not in out
    for stage in GPU_STAGES:
        for check in (
            "GET /health",
            "200 for good audio",
            "within the call's timeout",
            "404 for missing audio",
            "422 for undecodable audio",
            "400 for a bad request",
        ):
            assert any(
                line.split()[:1] == [stage] and check in line and "PASS" in line
                for line in out.splitlines()
            ), (stage, check, out)
    assert out.count("SKIP") == 2 * len(GPU_STAGES)  # 503 needs --unavailable; 429 a full queue


async def test_an_unavailable_simulator_answers_503_with_retry_after(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    await sim.set_faults(error_rate=1.0)
    code, out = await _run([f"http://{H2}", "--unavailable", *_ports(sim)], capsys)
    assert code == 0, out
    assert out.count("503 with Retry-After") == len(GPU_STAGES)
    # The same host told to refuse work fails the ordinary run.
    code, out = await _run([f"http://{H2}", "--stage=stt", *_ports(sim)], capsys)
    assert code == 1 and "200 for good audio" in out


@pytest.fixture
async def lenient_host() -> AsyncIterator[str]:
    """An IVR host as a team might first write it: strings for booleans, 200 for anything."""

    async def ivr(request: web.Request) -> web.Response:
        return web.json_response({"is_ivr": "false", "confidence": "0.9"})

    app = web.Application()
    app.router.add_post("/v1/ivr", ivr)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_lenient_host_fails_naming_what_is_wrong(
    lenient_host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await _run([lenient_host, "--stage=ivr"], capsys)
    assert code == 1
    failed = [line for line in out.splitlines() if " FAIL " in f" {line} "]
    text = "\n".join(failed)
    assert "is_ivr: Input should be a valid boolean (got 'false')" in text
    assert "GET /health" in text and "404" in text
    assert "404 for missing audio" in text and "422 for undecodable audio" in text
    assert "400 for a bad request" in text
