"""The real pipeline for a bench run: every service a process, on the bench's own addresses.

Built on the harness the demo and the end-to-end tests use (`cli.local_stack`); a run gets a
fresh topic prefix and a fresh database, and a warm-up batch makes sure every consumer has
joined its group before anything is timed.
"""

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench import request_count
from bench.infra import delete_topics, fresh_database, remove_faust_data
from bench.procfs import (
    ProcessUsage,
    machine_busy,
    own_cpu_seconds,
    pid_from_file,
    usage,
)
from cli.local_stack import PipelineConfig, create_topics, start_pipeline
from cli.processes import ProcessGroup
from cli.upload import submit
from services.dashboard.summary import BatchSummary, batch_summary
from services.tracker.migrate import migrate
from shared.stages import GPU_STAGES
from shared.status import Status
from shared.upload_client import UploadClient, uploads_for

T = TypeVar("T")
log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent

# The bench's own addresses and ports, so it never collides with a demo or a test run.
GPU_HOSTS = ("127.0.2.2", "127.0.2.3", "127.0.2.4", "127.0.2.5")
GPU_PORTS = {f"{stage.upper()}_PORT": str(45010 + i) for i, stage in enumerate(GPU_STAGES)}
LLM_PORT = 48000
CONTROL_PORT = 45099
WARMUP_FILES = 20
CAPACITY = 4  # each simulated host serves each stage this many files at a time


# The broker and the database serve every run on this machine, not only ours.
# Where `make infra` keeps them: COFI_CACHE, as the infra scripts read it (a worktree shares
# the main checkout's).
INFRA_CACHE = Path(os.environ.get("COFI_CACHE") or ROOT / ".cache")
SHARED_PID_FILES = {
    "kafka broker": INFRA_CACHE / "kafka" / "kafka.pid",
    "mariadb": INFRA_CACHE / "mariadb" / "mariadbd.pid",
}


@dataclass(frozen=True)
class Snapshot:
    """CPU and memory of everything a measurement involves, at one moment."""

    at: float  # monotonic
    services: dict[str, ProcessUsage]
    shared: dict[str, ProcessUsage]
    machine_busy_s: float
    bench_cpu_s: float
    # Kafka requests the services (simulator excluded) sent so far, by kind; empty unless
    # counted (`bench.request_count`).
    kafka_requests: dict[str, int] = field(default_factory=dict)


def own_cpu(before: Snapshot, after: Snapshot) -> float:
    """CPU seconds the measurement's own processes used: services, broker, database, bench."""
    ours = sum(after.services[n].cpu_s - before.services[n].cpu_s for n in after.services)
    ours += sum(
        after.shared[n].cpu_s - before.shared[n].cpu_s for n in after.shared if n in before.shared
    )
    return ours + after.bench_cpu_s - before.bench_cpu_s


def capacity(before: Snapshot, after: Snapshot) -> float:
    """CPU seconds the machine had between the two snapshots."""
    return (after.at - before.at) * (os.cpu_count() or 1)


def other_load(before: Snapshot, after: Snapshot) -> float:
    """Share of the machine's CPU capacity used by work that is not this measurement's.

    The broker and the database count as ours, although they may serve other runs too.
    """
    busy = after.machine_busy_s - before.machine_busy_s
    # Clipped: a broker restarted in between makes its CPU time incomparable.
    return min(1.0, max(0.0, (busy - own_cpu(before, after)) / capacity(before, after)))


def cpu_floor(before: Snapshot, after: Snapshot, files: int) -> tuple[float, str]:
    """The shortest makespan the CPU left to the run allows, and a sentence saying so."""
    ours = own_cpu(before, after)
    share = ours / capacity(before, after)
    other = other_load(before, after)
    cores = os.cpu_count() or 1
    per_file = ours / files
    floor = files * per_file / (cores * max(0.05, 1 - other))
    return floor, (
        f"This run's own processes (services, simulator, broker, MariaDB, bench) used "
        f"{per_file * 1000:.1f} ms of CPU per file, {share:.0%} of the machine's {cores} cores, "
        f"other work {other:.0%}: with the CPU left to it, the run could not take less than "
        f"{floor:.1f} s (its CPU-bound floor)."
    )


def shared_usage() -> dict[str, ProcessUsage]:
    found = {}
    for name, path in SHARED_PID_FILES.items():
        pid = pid_from_file(path)
        if pid is not None:
            try:
                found[name] = usage(pid)
            except (OSError, ValueError):
                continue
    return found


def cpu_between(before: ProcessUsage | None, after: ProcessUsage | None) -> float | None:
    """CPU seconds a shared process used between two readings; None if either is missing."""
    return None if before is None or after is None else after.cpu_s - before.cpu_s


async def paced(
    items: Sequence[T], rate: float, send: Callable[[Sequence[T]], Awaitable[object]]
) -> None:
    """`send` the items in slices, `rate` items a second on average (ten slices a second):
    arrivals as an upload system spreads them, not a burst."""
    if rate <= 0:
        raise ValueError(f"rate {rate}: must be positive")
    step = max(1, round(rate / 10))
    started = time.monotonic()
    for i in range(0, len(items), step):
        await send(items[i : i + step])
        ahead = started + (i + step) / rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)


@dataclass(frozen=True)
class Infra:
    bootstrap: str
    database_server_url: str


@dataclass
class BenchPipeline:
    config: PipelineConfig
    group: ProcessGroup
    engine: AsyncEngine
    database_url: str
    requests_dir: Path | None = None  # where its services count their Kafka requests

    @property
    def uploads_topic(self) -> str:
        return self.config.settings().topics.uploads

    async def submit(self, batch_id: str, paths: Sequence[Path], rate: float | None = None) -> None:
        """The batch's uploads, then its close: all at once, or `rate` files a second."""
        topics = self.config.settings().topics
        if rate is None:
            await submit(self.config.bootstrap, topics, batch_id, list(paths))
            return
        async with UploadClient(self.config.bootstrap, topics.prefix) as client:
            uploads = uploads_for(batch_id, paths)
            await paced(uploads, rate, client.submit_files)
            await client.close_batch(batch_id, len(uploads))

    async def wait_complete(self, batch_id: str, timeout_s: float) -> float:
        """Poll the tables until the batch is Complete; returns that moment (monotonic)."""
        deadline = time.monotonic() + timeout_s
        query = text("SELECT status FROM batchStatus WHERE batchId = :b")
        while time.monotonic() < deadline:
            async with self.engine.connect() as conn:
                status = (await conn.execute(query, {"b": batch_id})).scalar()
            if status == Status.COMPLETE:
                return time.monotonic()
            self.check_alive()
            await asyncio.sleep(0.1)
        summary = await self.summary(batch_id)
        raise TimeoutError(f"batch {batch_id} not Complete within {timeout_s:.0f}s: {summary}")

    async def summary(self, batch_id: str) -> BatchSummary:
        summary = await batch_summary(self.engine, batch_id)
        if summary is None:
            raise RuntimeError(f"batch {batch_id} is not in batchStatus")
        return summary

    def check_alive(self) -> None:
        dead = self.group.dead()
        if dead:
            raise RuntimeError(
                "service exited: " + ", ".join(f"{p.name} (log {p.log_path})" for p in dead)
            )

    def services(self) -> dict[str, int]:
        """Service name -> pid, the simulator last (it is not part of the product)."""
        names = sorted(self.group.processes, key=lambda n: (n == "simulator", n))
        return {n: self.group.processes[n].popen.pid for n in names}

    def usage(self) -> dict[str, ProcessUsage]:
        return {name: usage(pid) for name, pid in self.services().items()}

    def snapshot(self) -> Snapshot:
        return Snapshot(
            at=time.monotonic(),
            services=self.usage(),
            shared=shared_usage(),
            machine_busy_s=machine_busy(),
            bench_cpu_s=own_cpu_seconds(),
            kafka_requests=self.kafka_requests(),
        )

    def kafka_requests(self) -> dict[str, int]:
        if self.requests_dir is None:
            return {}
        pids = [pid for name, pid in self.services().items() if name != "simulator"]
        return dict(request_count.read(self.requests_dir, pids))


def gpu_hosts_spec(capacity: int, hosts: Sequence[str] = GPU_HOSTS) -> str:
    return ",".join(f"{h}:{capacity}" for h in hosts)


def fleet_hosts(count: int) -> tuple[str, ...]:
    """`count` simulated GPU hosts on loopback addresses, the bench's four first."""
    if not 1 <= count <= 250:
        raise ValueError(f"{count} GPU hosts: the bench's loopback range holds 1 to 250")
    return tuple(f"127.0.2.{2 + i}" for i in range(count))


@asynccontextmanager
async def running_pipeline(
    infra: Infra,
    *,
    prefix: str,
    latency_scale: float,
    warmup: Sequence[Path],
    log_dir: Path,
    capacity: int = CAPACITY,
    extra_env: dict[str, str] | None = None,
    simulator_config: dict[str, object] | None = None,
    hosts: Sequence[str] = GPU_HOSTS,
    count_requests: Path | None = None,
) -> AsyncIterator[BenchPipeline]:
    """`count_requests`: a folder where the services count their Kafka requests."""
    env = dict(GPU_PORTS, **(extra_env or {}))
    if count_requests is not None:
        env.update(request_count.hook_env(count_requests, env.get("PYTHONPATH")))
    if simulator_config is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        sim_file = log_dir / "simulator.json"
        sim_file.write_text(json.dumps(simulator_config, indent=2))
        env["SIM_CONFIG"] = str(sim_file)
    async with fresh_database(infra.database_server_url, f"bench_{prefix}") as url:
        config = PipelineConfig(
            bootstrap=infra.bootstrap,
            topic_prefix=prefix,
            gpu_hosts=gpu_hosts_spec(capacity, hosts),
            database_url=url,
            llm_port=LLM_PORT,
            control_port=CONTROL_PORT,
            latency_scale=latency_scale,
            extra_env=env,
        )
        await create_topics(config)
        await migrate(url)
        group = await asyncio.to_thread(start_pipeline, config, log_dir)
        engine = create_async_engine(url)
        pipeline = BenchPipeline(config, group, engine, url, count_requests)
        try:
            await pipeline.submit(f"{prefix}-warmup", warmup)
            await pipeline.wait_complete(f"{prefix}-warmup", timeout_s=180)
            yield pipeline
        finally:
            await engine.dispose()
            await asyncio.to_thread(group.stop_all)
            remove_faust_data(prefix, ROOT)


async def cleanup_topics(infra: Infra, prefixes: Sequence[str]) -> None:
    for prefix in prefixes:
        await delete_topics(infra.bootstrap, prefix)
