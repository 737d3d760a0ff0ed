"""The control API, and `python -m simulator` as a real process."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from simulator import Simulator
from simulator.testing import running_simulator, write_wav

H2, H3 = "127.0.0.2", "127.0.0.3"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator() as s:
        yield s


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


async def test_stats_reset_and_healthz(
    sim: Simulator, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "a.wav")
    req = {"batch_id": "b", "file_name": "a.wav", "audio_uri": wav.as_uri()}
    assert (await client.post(sim.gpu_url(H2, "lid"), json=req)).status_code == 200
    stats = (await client.get(f"{sim.control_url}/stats")).json()
    assert stats["gpu"]["calls"][H2]["lid"] == {"a.wav": 1}
    assert stats["gpu"]["calls"][H3]["lid"] == {}
    assert stats["gpu"]["max_concurrency"][H2]["lid"] == 1
    assert stats["totals"] == {"gpu_calls": 1, "llm_calls": 0, "calls": 1}
    assert stats["llm"]["max_concurrency_seen"] == 0

    assert (await client.post(f"{sim.control_url}/reset")).status_code == 200
    stats = (await client.get(f"{sim.control_url}/stats")).json()
    assert stats["gpu"]["calls"][H2]["lid"] == {} and stats["totals"]["calls"] == 0

    health = await client.get(f"{sim.control_url}/healthz")
    assert health.status_code == 200 and health.json()["ok"] is True


async def test_faults_endpoint(sim: Simulator, client: httpx.AsyncClient, tmp_path: Path) -> None:
    url = f"{sim.control_url}/faults"
    resp = await client.post(url, json={"host": H3, "stage": "stt", "error_rate": 1, "down": True})
    assert resp.status_code == 200
    assert resp.json()["gpu"][H3]["stt"]["error_rate"] == 1
    assert sim.gpu[(H3, "stt")].knobs.down and not sim.gpu[(H2, "stt")].knobs.down
    with pytest.raises(httpx.ConnectError):
        await client.post(sim.gpu_url(H3, "stt"), json={})
    health = (await client.get(f"{sim.control_url}/healthz")).json()
    assert health["ok"] is True  # deliberately down is not unhealthy
    assert health["servers"][f"{H3}:{sim.config.ports['stt']}/stt"] == "down"

    resp = await client.post(url, json={"llm": {"malformed_rate": 0.5}, "latency_scale": 2})
    assert resp.status_code == 200
    assert sim.llm.knobs.malformed_rate == 0.5
    assert all(s.knobs.latency_scale == 2 for s in sim.gpu.values())

    # Invalid requests change nothing.
    for bad in (
        {"host": "127.0.0.99", "error_rate": 0.5},
        {"stage": "nope", "error_rate": 0.5},
        {"error_rate": 2},
        {"bogus": 1},
        {"error_rate": 0.5, "llm": {"error_rate": "high"}},
    ):
        resp = await client.post(url, json=bad)
        assert resp.status_code == 400, bad
    assert sim.gpu[(H2, "stt")].knobs.error_rate == 0 and sim.llm.knobs.error_rate == 0


async def test_cli_process_serves_until_sigterm(tmp_path: Path) -> None:
    base = random.randrange(30_010, 32_000, 10)
    env = {
        **os.environ,
        "GPU_HOSTS": f"{H2}:2,{H3}:2",
        "DENOISE_PORT": str(base),
        "IVR_PORT": str(base + 1),
        "LID_PORT": str(base + 2),
        "STT_PORT": str(base + 3),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        "--llm-port",
        str(base + 4),
        "--control-port",
        str(base + 5),
        "--latency-scale",
        "0",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=15)
        assert line == b"simulator ready\n", await proc.stderr.read()  # type: ignore[union-attr]
        async with httpx.AsyncClient(timeout=5) as client:
            health = await client.get(f"http://127.0.0.1:{base + 5}/healthz")
            assert health.status_code == 200
            wav = write_wav(tmp_path / "a.wav")
            req = {"batch_id": "b", "file_name": "a.wav", "audio_uri": wav.as_uri()}
            resp = await client.post(f"http://{H3}:{base + 3}/v1/stt", json=req)
            assert resp.status_code == 200 and resp.json()["words"] >= 4
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
