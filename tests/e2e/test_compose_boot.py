"""docker-compose.yml booted for real, with podman and images built from Debian's packages.

The simulator profile's stack comes up (Kafka, MariaDB, topics, migrate, tracker, distributor,
every GPU-stage and LLM consumer, the progress page, Prometheus, Alertmanager, the simulated GPU
hosts and LLM; not Grafana, which Debian does not package), a batch is submitted from a
container on the audio volume, one of a GPU stage's replicas is killed mid-batch, the batch
completes in the tables, and the stack is torn down with its volumes. The stack is locked down:
every service logs in to Kafka as its own SCRAM user under the ACLs, and the upload system's
user, outside the network on the published SASL_SSL listener, is refused reading a transcript,
writing `done` or writing `control`.

`make test` runs the short form (one replica per consumer, two for the killed stage, a small
batch) once the images are built (`make images`); `make compose-test` the full one (COMPOSE_TEST_FULL=1: the compose file's replicas and
a larger batch).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from pydantic import SecretStr

from shared.acl_plan import UPLOAD
from shared.kafka_connection import KafkaConnection
from shared.stages import GPU_STAGES
from shared.topics import Topics
from tests.e2e.compose_stack import (
    Stack,
    background_build,
    background_log,
    booted,
    build_images,
    images_built,
    missing_tools,
    podman,
)
from tests.e2e.kafka_refusals import upload_user_is_refused_all_but_uploads

pytestmark = [pytest.mark.e2e, pytest.mark.compose]

FULL = os.environ.get("COMPOSE_TEST_FULL") == "1"
FILES = 120 if FULL else 16
CORRUPT = 2
KILLED = "gpu-a-stt"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(2)


def built_or_failed(cache: Path) -> str | None:
    """A probe for `wait_for`: the background build's end state, once it has one."""
    state = background_build(cache)
    return None if state == "running" else state


def healthy(stack: Stack, service: str) -> Callable[[], bool | None]:
    """A probe for `wait_for`: True once every container of the service is healthy."""
    return lambda: stack.healthy(service) or None


def short_scale(stack_services: list[str]) -> dict[str, int]:
    """One replica per consumer service, two of the stage whose replica is killed."""
    consumers = [s for s in stack_services if s.startswith("gpu-") and s.count("-") == 2]
    return {**{s: 1 for s in consumers}, "llm1": 1, "llm2": 1, KILLED: 2}


def batch_row(stack: Stack, batch: str) -> dict[str, str] | None:
    columns = ("status", "totalFiles", "doneFiles", "skippedFiles", "failedFiles")
    rows = stack.sql(f"SELECT {', '.join(columns)} FROM batchStatus WHERE batchId = '{batch}'")
    return dict(zip(columns, rows[0], strict=True)) if rows else None


def under_way(stack: Stack, batch: str) -> bool | None:
    row = batch_row(stack, batch)
    return True if row and row["status"] != "Complete" else None


def complete(stack: Stack, batch: str) -> dict[str, str] | None:
    row = batch_row(stack, batch)
    return row if row and row["status"] == "Complete" else None


def as_upload_system(stack: Stack) -> KafkaConnection:
    """The upload system's login on the published EXTERNAL listener (SASL_SSL)."""
    return KafkaConnection(
        bootstrap_servers=f"localhost:{stack.env['KAFKA_EXTERNAL_PORT']}",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=UPLOAD,
        sasl_password=SecretStr((stack.secrets / "kafka_upload").read_text().strip()),
        ssl_cafile=str(stack.secrets / "kafka_ca.pem"),
    )


def test_the_compose_stack_boots_and_completes_a_batch_despite_a_killed_replica(
    tmp_path: Path,
) -> None:
    cache = Path(os.environ.get("COFI_CACHE", Path(__file__).resolve().parents[2] / ".cache"))
    if background_build(cache) is not None:
        # `make test` builds the images while the rest of the suite runs, and runs this last.
        state = wait_for("the images' background build", lambda: built_or_failed(cache), 2400)
        assert state == "ok", f"the images' build failed:\n{background_log(cache)}"
    elif missing_tools():
        pytest.skip(f"needs {', '.join(missing_tools())}")
    elif not FULL and not images_built():
        # Building them (debootstrap) takes minutes: `make images` once, or `make test`.
        pytest.skip("the images from Debian are not built: make images")
    images = build_images(cache)
    gpu_services = [f"gpu-{h}-{s}" for h in "ab" for s in GPU_STAGES]
    scale = {} if FULL else short_scale(gpu_services)
    extra = {"SIM_LATENCY_SCALE": "0.2"}
    with booted(tmp_path, images, scale, extra) as stack:
        assert "grafana" not in stack.services and "tracker" in stack.services
        # The services' own healthchecks (/readyz) pass, as compose's conditions rely on them.
        for service in ("tracker", "distributor", KILLED):
            wait_for(f"{service} to be healthy", healthy(stack, service), 600)
        batch = f"compose-{uuid.uuid4().hex[:8]}"
        stack.compose(
            "run", "--rm", "-T", "upload-demo", "submit", batch, "--synthetic", str(FILES),
            "--corrupt", str(CORRUPT), "--workdir", "/data/audio",
        )  # fmt: skip
        # Mid-batch: files are known to the tracker and not all of them are finished.
        wait_for("the batch to be under way", lambda: under_way(stack, batch), timeout=600)
        victims = stack.containers(KILLED)
        assert len(victims) >= 2, f"{KILLED}: {victims}"
        podman("kill", victims[0])
        assert under_way(stack, batch), "the batch finished before the kill: not mid-batch"
        row = wait_for(
            "the batch to complete", lambda: complete(stack, batch), timeout=1800 if FULL else 900
        )
        assert row["totalFiles"] == str(FILES), row
        finished = sum(int(row[k]) for k in ("doneFiles", "skippedFiles", "failedFiles"))
        assert finished == FILES, row
        assert int(row["failedFiles"]) >= CORRUPT, row
        unfinished = stack.sql(
            f"SELECT COUNT(*) FROM fileDistribution WHERE batchId = '{batch}'"
            " AND terminalState IS NULL"
        )
        assert unfinished == [["0"]], unfinished
        rows = stack.sql(f"SELECT COUNT(*) FROM fileDistribution WHERE batchId = '{batch}'")
        assert rows == [[str(FILES)]], rows
        # After the batch: the upload user's one accepted write is an invalid event.
        refused = upload_user_is_refused_all_but_uploads(as_upload_system(stack), Topics(), "gpu-a")
        asyncio.run(refused)
