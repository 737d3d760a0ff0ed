"""The GPU stage servers over real HTTP on 127.0.0.2 / 127.0.0.3 (no Kafka or database needed)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shared.stages import GPU_STAGES
from simulator import Simulator
from simulator.testing import running_simulator, write_corrupt_files, write_wav
from tests.kafka_helpers import wait_until

H2, H3 = "127.0.0.2", "127.0.0.3"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator() as s:
        yield s


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "call-1.wav")


def body(path: Path | str, name: str = "call-1.wav") -> dict[str, object]:
    uri = path.as_uri() if isinstance(path, Path) else path
    return {"batch_id": "b1", "file_name": name, "audio_uri": uri, "inputs": {}}


@pytest.mark.parametrize("stage", GPU_STAGES)
async def test_each_stage_answers_deterministically(
    sim: Simulator, client: httpx.AsyncClient, wav: Path, stage: str
) -> None:
    first = await client.post(sim.gpu_url(H2, stage), json=body(wav))  # type: ignore[arg-type]
    again = await client.post(sim.gpu_url(H3, stage), json=body(wav))  # type: ignore[arg-type]
    assert first.status_code == 200, first.text
    assert first.json() == again.json()  # same file, any host, any replay: same answer
    out = first.json()
    expected_keys = {
        "denoise": {"denoised_uri", "duration_s", "snr_db"},
        "ivr": {"is_ivr", "confidence"},
        "lid": {"language", "confidence"},
        "stt": {"transcript", "words"},
    }[stage]
    assert set(out) == expected_keys
    if stage == "denoise":
        assert out["duration_s"] == 1.0 and out["denoised_uri"] == wav.as_uri()
    if stage == "lid":
        assert out["language"] in {"en", "hi", "es", "xx"}
    if stage == "stt":
        assert "duration 1.0s" in out["transcript"]
    stats = sim.stats()
    assert stats["gpu"]["calls"][H2][stage] == {"call-1.wav": 1}
    assert stats["gpu"]["calls"][H3][stage] == {"call-1.wav": 1}


async def test_missing_audio_is_404(
    sim: Simulator, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    missing = tmp_path / "gone.wav"
    resp = await client.post(sim.gpu_url(H2, "denoise"), json=body(missing))
    assert resp.status_code == 404
    assert resp.json() == {"error": f"audio not found: {missing}"}


@pytest.mark.parametrize("kind", ["empty", "random", "truncated_header", "truncated_data"])
async def test_corrupt_audio_is_422(
    sim: Simulator, client: httpx.AsyncClient, tmp_path: Path, kind: str
) -> None:
    path = write_corrupt_files(tmp_path)[kind]
    resp = await client.post(sim.gpu_url(H3, "stt"), json=body(path, "bad.wav"))
    assert resp.status_code == 422
    assert resp.json()["error"].startswith("undecodable audio: ")


async def test_bad_requests_are_400(sim: Simulator, client: httpx.AsyncClient, wav: Path) -> None:
    url = sim.gpu_url(H2, "lid")
    assert (await client.post(url, content=b"{not json")).status_code == 400
    assert (await client.post(url, json=["a list"])).status_code == 400
    no_file = {"batch_id": "b1", "audio_uri": wav.as_uri()}
    resp = await client.post(url, json=no_file)
    assert resp.status_code == 400 and "file_name" in resp.json()["error"]
    s3 = await client.post(url, json=body("s3://bucket/x.wav"))
    assert s3.status_code == 400


async def test_over_queue_limit_is_429(
    sim: Simulator, client: httpx.AsyncClient, wav: Path
) -> None:
    # One slot, two queue places, 0.3 s per request: of 6 simultaneous requests 3 fit.
    await sim.set_faults(H2, "stt", capacity=1, queue_limit=2, latency_s=0.3, latency_scale=1)
    responses = await asyncio.gather(
        *(client.post(sim.gpu_url(H2, "stt"), json=body(wav)) for _ in range(6))
    )
    assert Counter(r.status_code for r in responses) == {200: 3, 429: 3}
    assert all(r.headers["Retry-After"] == "1" for r in responses if r.status_code == 429)


async def test_capacity_bounds_concurrency(
    sim: Simulator, client: httpx.AsyncClient, wav: Path
) -> None:
    await sim.set_faults(H3, "denoise", capacity=3, latency_s=0.05, latency_scale=1)
    responses = await asyncio.gather(
        *(client.post(sim.gpu_url(H3, "denoise"), json=body(wav, f"f{i}.wav")) for i in range(12))
    )
    assert [r.status_code for r in responses] == [200] * 12
    stats = sim.stats()["gpu"]
    assert stats["max_concurrency"][H3]["denoise"] == 3  # saturated, never exceeded
    assert stats["totals"][H3]["denoise"] == 12
    assert stats["max_concurrency"][H2]["denoise"] == 0


async def test_error_rate_one_is_503_on_that_host_only(
    sim: Simulator, client: httpx.AsyncClient, wav: Path
) -> None:
    await sim.set_faults(H3, None, error_rate=1.0)
    for stage in GPU_STAGES:
        bad = await client.post(sim.gpu_url(H3, stage), json=body(wav))
        assert bad.status_code == 503 and "error" in bad.json()
        assert (await client.post(sim.gpu_url(H2, stage), json=body(wav))).status_code == 200
    await sim.set_faults(H3, None, error_rate=0.0)
    assert (await client.post(sim.gpu_url(H3, "lid"), json=body(wav))).status_code == 200


async def test_timeout_rate_hangs_then_504(
    sim: Simulator, client: httpx.AsyncClient, wav: Path
) -> None:
    await sim.set_faults(H2, "ivr", timeout_rate=1.0, hang_s=0.2)
    started = time.monotonic()
    resp = await client.post(sim.gpu_url(H2, "ivr"), json=body(wav))
    assert resp.status_code == 504
    assert time.monotonic() - started >= 0.2
    # A client that gives up first sees a timeout, and the hung request frees its slot.
    await sim.set_faults(H2, "ivr", hang_s=30)
    with pytest.raises(httpx.ReadTimeout):
        await client.post(sim.gpu_url(H2, "ivr"), json=body(wav), timeout=0.2)
    await wait_until(lambda: sim.stats()["gpu"]["in_flight"][H2]["ivr"] == 0)


async def test_down_refuses_connections_then_recovers(
    sim: Simulator, client: httpx.AsyncClient, wav: Path
) -> None:
    url = sim.gpu_url(H3, "stt")
    assert (await client.post(url, json=body(wav))).status_code == 200  # keep-alive conn open
    await sim.set_faults(H3, "stt", down=True)
    with pytest.raises(httpx.ConnectError):
        await client.post(url, json=body(wav))
    async with httpx.AsyncClient() as fresh:
        with pytest.raises(httpx.ConnectError):
            await fresh.post(url, json=body(wav))
    # Only that (host, stage) is down.
    assert (await client.post(sim.gpu_url(H2, "stt"), json=body(wav))).status_code == 200
    assert (await client.post(sim.gpu_url(H3, "lid"), json=body(wav))).status_code == 200
    await sim.set_faults(H3, "stt", down=False)
    assert (await client.post(url, json=body(wav))).status_code == 200


async def test_going_down_drops_requests_in_flight(
    sim: Simulator, client: httpx.AsyncClient, wav: Path
) -> None:
    await sim.set_faults(H2, "denoise", timeout_rate=1.0, hang_s=30)
    request = asyncio.create_task(client.post(sim.gpu_url(H2, "denoise"), json=body(wav)))
    await wait_until(lambda: sim.stats()["gpu"]["in_flight"][H2]["denoise"] == 1)
    await sim.set_faults(H2, None, down=True)
    with pytest.raises(httpx.TransportError):
        await request
    await wait_until(lambda: sim.stats()["gpu"]["in_flight"][H2]["denoise"] == 0)
    assert sim.stats()["gpu"]["responses"][H2]["denoise"] == {"dropped": 1}
