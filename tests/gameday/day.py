"""The game day's world: one pipeline (the crash suite's `ChaosRun` as its handle: kill,
restart, simulator faults), the infrastructure it may break, and the log of every step the
game day takes, so the invariants can say that none was taken by hand.

Unlike a crash scenario, a game day runs many batches on one pipeline: the `ChaosRun` here is
the pipeline's handle only (its `batch_id` names no batch); `Day.batches` holds the batches.
"""

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from sqlalchemy.ext.asyncio import create_async_engine

from cli.local_stack import PipelineConfig, create_topics, start_pipeline
from tests.crash.harness import (
    CRASH_CONTROL_PORT,
    CRASH_LLM_PORT,
    CRASH_PORTS,
    LLM_MAX_CONCURRENCY,
    ChaosRun,
    ChaosSettings,
)
from tests.crash.lifecycle import delete_topics
from tests.crash.scenario import Breakables

# Service ports of their own (the crash suite's plus this), so a game day and a crash test
# on one machine do not collide.
GAMEDAY_PORT_OFFSET = 3000
# Failover after 20 s of a host down: a game day's outages (20-90 s) then cover both sides of
# the deadline (the issue measured 3 s; the default is 300 s).
GAMEDAY_ENV = {
    "GPU_HOST_FAILOVER_DEADLINE_S": "20",
    "GPU_PROBE_MAX_DELAY_S": "2",
    "LLM_PROBE_MAX_DELAY_S": "2",
}

StepKind = Literal["workload", "fault-start", "fault-stop", "supervisor"]


@dataclass
class Step:
    """One thing the game day did to the pipeline: every step comes from the seeded plan
    (the workload, a fault's start or stop) or is a supervisor's restart of a service that
    exited by itself. Nothing else touches the pipeline: no step is taken by hand."""

    at_s: float
    kind: StepKind
    what: str


@dataclass
class Batch:
    """A batch of the workload and what the plan does with it."""

    batch_id: str
    files: list[str]
    submitted_s: float
    plan: str = "plain"  # plain, cancel, late, retry, hostile
    finished_s: float | None = None  # when the tables first said Complete or Cancelled
    status: str = ""
    # Files the plan expects to fail, and the reason each is expected to name.
    expected_failures: dict[str, str] = field(default_factory=dict)
    # File names uploaded after the batch completed: they must get no row.
    late_files: list[str] = field(default_factory=list)
    retried: int = 0


@dataclass
class ActiveFault:
    kind: str
    title: str
    started_s: float
    started_at: datetime
    stopped_s: float | None = None
    stopped_at: datetime | None = None
    detail: str = ""
    error: str = ""


@dataclass
class Day:
    seed: int
    # The workload's draws; each fault draws from a generator of its own (`faults.py`), so
    # the same seed gives the same plan whatever the timing.
    rng: random.Random
    run: ChaosRun
    infra: Breakables
    audio: list[Path]
    log_dir: Path
    started: float = field(default_factory=time.monotonic)
    batches: dict[str, Batch] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    faults: list[ActiveFault] = field(default_factory=list)
    # Raw records injected on purpose (poison, hostile keys): (topic, partition, offset) -> what.
    injected: dict[tuple[str, int, int], str] = field(default_factory=dict)
    # Services the game day found exited by themselves (a supervisor restarted them).
    died: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # What went wrong in the game day's own machinery (the report says it; the run fails).
    harness_errors: list[str] = field(default_factory=list)
    tracker_group: str = ""
    # The workload's follow-ups (cancel, late upload, retry), awaited before the end.
    follow_ups: list["asyncio.Task[None]"] = field(default_factory=list)

    def now(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def step(self, kind: StepKind, what: str) -> None:
        self.steps.append(Step(self.now(), kind, what))

    @property
    def config(self) -> PipelineConfig:
        return self.run.config

    def hosts(self) -> tuple[str, ...]:
        return self.run.settings.hosts

    async def end_offsets(self) -> dict[TopicPartition, int]:
        """Every partition's end offset now, of every topic of the pipeline."""
        settings = self.config.settings()
        topics = settings.topics.all_topics(settings.host_ips)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.config.bootstrap)
        await consumer.start()
        try:
            parts = [TopicPartition(t, p) for t in topics for p in range(self.config.partitions)]
            return dict(await consumer.end_offsets(parts))
        finally:
            await consumer.stop()

    def supervise(self) -> None:
        """Restart a service that exited by itself, as systemd or Kubernetes would; the
        invariants count it (a service must not die of a fault it is meant to survive)."""
        for proc in self.run.group.dead():
            if proc.name in self.run.expected_down:
                continue
            self.died.append(f"{proc.name} (code {proc.popen.returncode}) at {self.now()}s")
            self.step("supervisor", f"restart {proc.name}, which exited by itself")
            self.run.group.restart(proc.name)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@asynccontextmanager
async def pipeline(
    settings: ChaosSettings,
    infra: Breakables,
    bootstrap: str,
    database_url: str,
    log_dir: Path,
) -> AsyncIterator[ChaosRun]:
    """Every service of the pipeline as processes on fresh topics and a fresh database; the
    `ChaosRun` handle the crash suite's faults act through. Stops everything afterwards."""
    from services.tracker.migrate import migrate

    prefix = f"g{uuid.uuid4().hex[:11]}"
    offset = GAMEDAY_PORT_OFFSET
    config = PipelineConfig(
        bootstrap=bootstrap,
        topic_prefix=prefix,
        gpu_hosts=settings.gpu_hosts,
        database_url=database_url,
        llm_port=CRASH_LLM_PORT + offset,
        control_port=CRASH_CONTROL_PORT + offset,
        latency_scale=settings.latency_scale,
        extra_env={
            **{name: str(int(port) + offset) for name, port in CRASH_PORTS.items()},
            "LLM_MAX_CONCURRENCY": str(LLM_MAX_CONCURRENCY),
            "F_DATADIR": str(log_dir / "distributor-data"),
            **GAMEDAY_ENV,
        },
    )
    await create_topics(config)
    await migrate(database_url)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(delete_topics, config)
        group = await asyncio.to_thread(start_pipeline, config, log_dir)
        stack.push_async_callback(asyncio.to_thread, group.stop_all)
        engine = create_async_engine(database_url, pool_pre_ping=True, pool_recycle=60)
        stack.push_async_callback(engine.dispose)
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
        yield ChaosRun("gameday", settings, config, group, engine, http, "", [])
