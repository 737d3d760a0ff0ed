"""A `ChaosRun`'s life: a fresh pipeline on its own topics and database, the batch submitted,
its progress sampled to a file, and everything torn down after, whatever the scenario did."""

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import create_async_engine

from cli.local_stack import PipelineConfig, create_topics, start_pipeline
from cli.upload import submit
from tests.crash.faults import PROGRESS_STAGES
from tests.crash.harness import (
    CRASH_CONTROL_PORT,
    CRASH_LLM_PORT,
    CRASH_PORTS,
    LLM_MAX_CONCURRENCY,
    ChaosRun,
    ChaosSettings,
    stage_count,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Infra:
    """Where a scenario's pipeline runs: a broker and a MariaDB server to create its database on."""

    bootstrap: str
    mariadb_server_url: str


@asynccontextmanager
async def chaos_run(
    scenario: str,
    settings: ChaosSettings,
    infra: Infra,
    database_url: str,
    paths: list[Path],
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    before_submit: Callable[[ChaosRun], Awaitable[None]] | None = None,
) -> AsyncIterator[ChaosRun]:
    """Start the pipeline, submit the batch, yield the run; stop every service afterwards."""
    from services.tracker.migrate import migrate

    prefix = f"c{uuid.uuid4().hex[:11]}"
    # Two crash suites on one machine (two worktrees): give one CRASH_PORT_OFFSET=1000.
    offset = int(os.environ.get("CRASH_PORT_OFFSET", "0"))
    config = PipelineConfig(
        bootstrap=infra.bootstrap,
        topic_prefix=prefix,
        gpu_hosts=settings.gpu_hosts,
        database_url=database_url,
        llm_port=CRASH_LLM_PORT + offset,
        control_port=CRASH_CONTROL_PORT + offset,
        latency_scale=settings.latency_scale,
        extra_env={
            **{name: str(int(port) + offset) for name, port in CRASH_PORTS.items()},
            "LLM_MAX_CONCURRENCY": str(LLM_MAX_CONCURRENCY),
            # faust keeps its (memory-only) table folder here instead of the repository root.
            "F_DATADIR": str(log_dir / "distributor-data"),
            **(extra_env or {}),
        },
    )
    await create_topics(config)
    await migrate(database_url)
    async with AsyncExitStack() as stack:
        # Last: thousands of leftover test topics are what ran the shared broker out of heap.
        stack.push_async_callback(delete_topics, config)
        group = await asyncio.to_thread(start_pipeline, config, log_dir)
        stack.push_async_callback(asyncio.to_thread, group.stop_all)
        engine = create_async_engine(database_url, pool_pre_ping=True)
        stack.push_async_callback(engine.dispose)
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
        batch_id = f"{scenario[:40]}-{uuid.uuid4().hex[:6]}"
        run = ChaosRun(scenario, settings, config, group, engine, http, batch_id, paths)
        if before_submit is not None:
            await before_submit(run)
        run.started = time.monotonic()
        await submit(infra.bootstrap, run.topics, batch_id, paths)
        sampler = asyncio.create_task(_sample_progress(run, log_dir / "progress.tsv"))
        stack.callback(sampler.cancel)
        yield run


async def delete_topics(config: PipelineConfig) -> None:
    settings = config.settings()
    names = settings.topics.all_topics(settings.host_ips)
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap, request_timeout_ms=60_000)
    try:
        await admin.start()
        await admin.delete_topics(names, timeout_ms=60_000)
    except KafkaError as exc:  # a leftover topic is untidy, not a failed scenario
        log.warning("could not delete the topics of %s: %s", config.topic_prefix, exc)
    finally:
        await admin.close()


async def _sample_progress(run: ChaosRun, path: Path) -> None:
    """Two lines a second of the batch's progress, to read a scenario's timeline afterwards
    and to measure its longest pause (`ChaosRun.longest_pause`)."""
    with path.open("w") as out:
        out.write("seconds\t" + "\t".join(PROGRESS_STAGES) + "\tterminal\n")
        while True:
            summary = await run.summary()
            if summary is not None:
                counts = [stage_count(summary, s) for s in (*PROGRESS_STAGES, "terminal")]
                elapsed = time.monotonic() - run.started
                run.terminal_samples.append((elapsed, counts[-1], stage_count(summary, "llm2")))
                out.write(f"{elapsed:.1f}\t" + "\t".join(map(str, counts)) + "\n")
                out.flush()
            await asyncio.sleep(0.5)
