"""`cofi retry` and `cofi cancel` against the running pipeline, as an operator would use them."""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.audio import make_batch
from cli.upload import submit
from tests.kafka_helpers import wait_until
from tests.pipeline_harness import TWO_SECOND_CALLS, RunningPipeline, running_pipeline


def _cofi(pipeline: RunningPipeline, *args: str) -> str:
    env = {**os.environ, **pipeline.config.env()}
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"cofi {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


async def _states(engine: AsyncEngine, batch: str) -> dict[str, str | None]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT file, terminalState FROM fileDistribution WHERE batchId = :b"),
            {"b": batch},
        )
        return {r.file: r.terminalState for r in rows}


async def _wait(
    engine: AsyncEngine,
    batch: str,
    done: Callable[[dict[str, str | None]], bool],
    timeout_s: float = 120,
) -> dict[str, str | None]:
    states: dict[str, str | None] = {}

    async def reached() -> bool:
        nonlocal states
        states = await _states(engine, batch)
        return done(states)

    await wait_until(reached, timeout_s, lambda: f"batch {batch}: {states}", interval_s=0.5)
    return states


async def test_retry_sends_failed_files_back_and_the_tracker_shows_their_new_outcome(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    batch = f"retry-{uuid.uuid4().hex[:6]}"
    audio = make_batch(tmp_path / "audio", 40)
    late = audio[:3]  # uploaded before their audio was there: they fail with 404
    for path in late:
        shutil.move(path, tmp_path / path.name)
    async with running_pipeline(
        topic_prefix, mariadb_url, tmp_path / "logs", kafka_bootstrap
    ) as pipeline:
        await submit(kafka_bootstrap, pipeline.config.settings().topics, batch, audio)
        await pipeline.wait_finished(batch)
        states = await _states(pipeline.engine, batch)
        assert {states[p.name] for p in late} == {"failed"}

        for path in late:
            shutil.move(tmp_path / path.name, path)
        out = _cofi(pipeline, "retry", batch, "--stage", "denoise")
        assert "sent 3 files" in out
        states = await _wait(
            pipeline.engine, batch, lambda s: all(s[p.name] in ("done", "skipped") for p in late)
        )
        async with pipeline.engine.connect() as conn:
            attempts = (
                await conn.execute(
                    text(
                        "SELECT call_id, attempt, status FROM processing_logs WHERE batch_id = :b "
                        "AND stage_name = 'denoise' AND call_id = :f ORDER BY attempt"
                    ),
                    {"b": batch, "f": late[0].name},
                )
            ).all()
            status = (
                await conn.execute(
                    text("SELECT status, failedFiles FROM batchStatus WHERE batchId = :b"),
                    {"b": batch},
                )
            ).one()
    # The first attempt failed (404), the retry is attempt 2, logged beside it.
    assert [(a.attempt, a.status) for a in attempts] == [(1, "failure"), (2, "success")]
    assert status.failedFiles == 0
    assert status.status == "Complete"


async def test_cancel_stops_a_batch_mid_flight_and_the_tracker_ends_it_cancelled(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    batch = f"cancel-{uuid.uuid4().hex[:6]}"
    audio = make_batch(tmp_path / "audio", 400, lengths=TWO_SECOND_CALLS)
    # Slow models (twice the real latencies): the batch is still young when it is cancelled.
    async with running_pipeline(
        topic_prefix, mariadb_url, tmp_path / "logs", kafka_bootstrap, latency_scale=2.0
    ) as pipeline:
        await submit(kafka_bootstrap, pipeline.config.settings().topics, batch, audio)
        await _wait(
            pipeline.engine,
            batch,
            lambda s: sum(v is not None for v in s.values()) >= 10,
            timeout_s=120,
        )
        out = _cofi(pipeline, "cancel", batch, "--reason", "wrong files uploaded", "--json")
        assert json.loads(out) == {
            "batch_id": batch,
            "cancelled": True,
            "reason": "wrong files uploaded",
        }
        cancelled_at = time.time()
        summary = await pipeline.wait_finished(batch, timeout_s=120)
        states = await _states(pipeline.engine, batch)
        async with pipeline.engine.connect() as conn:
            late = (
                await conn.execute(
                    text(
                        "SELECT COUNT(*) FROM processing_logs WHERE batch_id = :b "
                        "AND startedAt > :t"
                    ),
                    {"b": batch, "t": _utc_naive(cancelled_at + 10)},
                )
            ).scalar_one()
    assert summary.status == "Cancelled"
    assert all(state is not None for state in states.values())
    assert sum(state == "cancelled" for state in states.values()) > 100
    # Stages stop starting work for the batch within seconds of the cancellation.
    assert late == 0


def _utc_naive(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)
