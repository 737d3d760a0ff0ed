"""Run the whole pipeline as processes for a test, and read its outcome from the tables."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cli.audio import CallLengths
from cli.local_stack import PipelineConfig, create_topics, start_pipeline
from cli.processes import ProcessGroup
from services.dashboard.summary import BatchSummary, batch_summary
from tests.kafka_helpers import wait_until

# Ports of their own, so a demo running on the defaults does not collide with the tests.
TEST_PORTS = {
    "DENOISE_PORT": "15010",
    "IVR_PORT": "15011",
    "LID_PORT": "15012",
    "STT_PORT": "15013",
}

# Calls of two seconds each, for tests that time the pipeline against the model (a dead host,
# a cancel mid-batch, a page watched while it runs): the old simulator's constant per-file
# times, so their latency scales keep their meaning. Other tests use make_batch's default,
# heavy-tailed lengths (at the harness's default latency scale a median call takes ~0.1 s).
TWO_SECOND_CALLS = CallLengths(median_s=2.0, sigma=0.0)


@dataclass
class RunningPipeline:
    config: PipelineConfig
    group: ProcessGroup
    engine: AsyncEngine

    async def wait_finished(self, batch_id: str, timeout_s: float = 300.0) -> BatchSummary:
        summary: BatchSummary | None = None

        async def finished() -> bool:
            nonlocal summary
            dead = self.group.dead()
            if dead:
                raise AssertionError(
                    "service exited: " + ", ".join(f"{p.name} ({p.log_path})" for p in dead)
                )
            summary = await batch_summary(self.engine, batch_id)
            return summary is not None and summary.finished

        await wait_until(
            finished, timeout_s, lambda: f"batch {batch_id} to finish: {summary}", interval_s=0.5
        )
        assert summary is not None
        return summary


@asynccontextmanager
async def running_pipeline(
    prefix: str,
    database_url: str,
    log_dir: Path,
    bootstrap: str,
    gpu_hosts: str = "127.0.0.2:4,127.0.0.3:4",
    latency_scale: float = 0.01,
    extra_env: dict[str, str] | None = None,
    llm_port: int = 18000,
    control_port: int = 15099,
    gpu_server: Literal["simulator", "model_host"] = "simulator",
) -> AsyncIterator[RunningPipeline]:
    from services.tracker.migrate import migrate

    config = PipelineConfig(
        bootstrap=bootstrap,
        topic_prefix=prefix,
        gpu_hosts=gpu_hosts,
        database_url=database_url,
        llm_port=llm_port,
        control_port=control_port,
        latency_scale=latency_scale,
        gpu_server=gpu_server,
        extra_env={**TEST_PORTS, "LOG_JSON": "true", **(extra_env or {})},
    )
    await create_topics(config)
    await migrate(database_url)
    group = await asyncio.to_thread(start_pipeline, config, log_dir)
    engine = create_async_engine(database_url)
    try:
        yield RunningPipeline(config, group, engine)
    finally:
        await engine.dispose()
        await asyncio.to_thread(group.stop_all)
