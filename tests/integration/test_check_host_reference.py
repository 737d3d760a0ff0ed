"""`cofi check-host` against the reference GPU host (model_host/, real models): a host built
from the contract alone passes the conformance kit."""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli import check_host
from shared.stages import GPU_STAGES
from tests.kafka_helpers import wait_until

pytestmark = pytest.mark.integration

IP = "127.0.0.5"
PORTS: dict[str, int] = {stage: 16110 + i for i, stage in enumerate(GPU_STAGES)}


@pytest.fixture
def reference_host(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        **{f"{stage.upper()}_PORT": str(port) for stage, port in PORTS.items()},
        "MODEL_HOST_DENOISED_DIR": str(tmp_path / "denoised"),
    }
    log = (tmp_path / "model-host.log").open("wb")
    host = subprocess.Popen(
        [sys.executable, "-m", "model_host", "--hosts", IP],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        yield host
    finally:
        host.terminate()
        host.wait(timeout=30)
        log.close()


def _health(stage: str) -> int:
    try:
        return httpx.get(f"http://{IP}:{PORTS[stage]}/health", timeout=5).status_code
    except httpx.TransportError:
        return 0


async def test_the_reference_host_passes_every_check(
    reference_host: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()

    async def ready() -> bool:
        assert reference_host.poll() is None, "the reference host exited"
        return all(_health(stage) == 200 for stage in GPU_STAGES)

    await wait_until(ready, 120, lambda: "the reference host's models to load")
    argv = [f"http://{IP}", *(f"--port={s}={p}" for s, p in PORTS.items())]
    code = await asyncio.to_thread(check_host.main, argv)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FAIL" not in out and out.count("PASS") >= 9 * len(GPU_STAGES), out
    assert time.monotonic() - started < 180
