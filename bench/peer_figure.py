"""Issue 21's figure 3: cofi's CPU per file against the faust peer's (`bench.faust_peer`), both
fed the same files at the same paced arrival rate, on the same simulator at instant models."""

import asyncio
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.faust_peer import (
    LOG_TABLE,
    STATE_TABLE,
    PeerConfig,
    PeerEvent,
    connect,
    create_tables,
    peer_roles,
)
from bench.fleet_cost import control_plane_cpu, services_cpu, spread, spread_text
from bench.model_chain import BROKER, ChainConfig
from bench.overhead import TimedBatch, timed_batch
from bench.procfs import usage
from bench.report import Figure, Section
from bench.resources import NOT_PRODUCT
from bench.run import BenchRun, say
from bench.saturation import broker_cpu_per_file
from bench.stack import (
    CAPACITY,
    GPU_HOSTS,
    GPU_PORTS,
    LLM_PORT,
    BenchPipeline,
    cpu_between,
    paced,
    shared_usage,
)
from cli.processes import ProcessGroup
from services.llm_stage.settings import LlmStageSettings
from shared.kafka import ensure_topics, make_producer
from shared.stages import GPU_STAGES
from shared.topics import Topics

PEER_FIGURE = "A fair peer: cofi's CPU per file / the faust peer's"
PEER_RATE = 50.0  # files a second: well below either's saturation on this machine
PEER_FILES = 3_000
PEER_BATCHES = 3  # each side: the median and the spread
WARMUP_FILES = 100
LLM_CONCURRENCY = LlmStageSettings.model_fields["llm_max_concurrency"].default


def chain_config(run: BenchRun, prefix: str, sizes: dict[str, int] | None = None) -> ChainConfig:
    """The bare chain's (and the peer's) layout: the bench's hosts, ports and the stages' own
    limits, with the knobs that change them (--env)."""
    return ChainConfig(
        bootstrap=run.infra.bootstrap,
        prefix=prefix,
        hosts=list(GPU_HOSTS),
        sizes=sizes or {},
        gpu_ports={stage: int(GPU_PORTS[f"{stage.upper()}_PORT"]) for stage in GPU_STAGES},
        llm_url=f"http://127.0.0.1:{LLM_PORT}/v1/chat/completions",
        capacity=int(run.env.get("GPU_MAX_IN_FLIGHT") or CAPACITY),
        llm_concurrency=int(run.env.get("LLM_MAX_CONCURRENCY") or LLM_CONCURRENCY),
    )


async def fair_peer(run: BenchRun, pipeline: BenchPipeline) -> Section:
    """cofi's paced batches through the running pipeline, then the peer's, the same files."""
    rate, files = run.args.peer_rate, run.args.peer_files
    paths = run.paths[:files]
    say(f"fair peer: {PEER_BATCHES} paced batches each, {len(paths):,} files at {rate:g}/s")
    prefix = pipeline.config.topic_prefix
    cofi = []
    for n in range(1, PEER_BATCHES + 1):
        batch = await timed_batch(pipeline, f"{prefix}-paced{n}", paths, rate=rate)
        cofi.append(batch)
        cpu = control_plane_cpu(batch.before, batch.after) / batch.files * 1000
        say(f"    cofi batch {n}: {batch.makespan_s:.1f} s, {cpu:.2f} ms CPU per file")
    config = PeerConfig(chain_config(run, run.prefix("p")), pipeline.database_url)
    batches = [paths] * PEER_BATCHES
    # Enough files to reach every host's hops before anything is timed.
    warmup = run.paths[-WARMUP_FILES:]
    peer = await run_peer(config, batches, warmup, rate, run.artifacts / "peer")
    return peer_section(cofi, peer, rate, config.chain)


@dataclass(frozen=True)
class PeerRun:
    files: int
    makespan_s: float  # first upload sent -> the tracker recorded every file done
    cpu_s: dict[str, float]  # peer process -> CPU seconds
    broker_cpu_s: float | None

    @property
    def cpu_per_file(self) -> float:
        return sum(self.cpu_s.values()) / self.files


async def produce_uploads(
    bootstrap: str, topic: str, batch_id: str, paths: Sequence[Path], rate: float | None
) -> None:
    producer = make_producer(bootstrap, "bench-peer-upload")
    await producer.start()
    try:
        events = [
            PeerEvent(
                batch_id=batch_id,
                file_name=p.name,
                audio_uri=p.resolve().as_uri(),
                stage="upload",
            )
            for p in paths
        ]

        async def send(part: Sequence[PeerEvent]) -> None:
            acks = [
                await producer.send(
                    topic, e.model_dump_json().encode(), key=f"{batch_id}/{e.file_name}".encode()
                )
                for e in part
            ]
            await asyncio.gather(*acks)

        await (send(events) if rate is None else paced(events, rate, send))
    finally:
        await producer.stop()


async def files_done(conn: Any, batch_id: str) -> int:
    async with conn.cursor() as cursor:
        await cursor.execute(
            f"SELECT COUNT(*) FROM {STATE_TABLE} WHERE batch_id = %s AND stage = 'done'",
            (batch_id,),
        )
        row = await cursor.fetchone()
    await conn.commit()  # a fresh snapshot for the next read
    return int(row[0])


async def wait_done(
    database_url: str, batch_id: str, files: int, group: ProcessGroup, timeout_s: float
) -> float:
    """Wait until the peer's tracker recorded every file of the batch done; returns when."""
    conn = await connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await files_done(conn, batch_id) >= files:
                return time.monotonic()
            dead = group.dead()
            if dead:
                raise RuntimeError(
                    "faust peer process exited: "
                    + ", ".join(f"{p.name} ({p.log_path})" for p in dead)
                )
            await asyncio.sleep(0.1)
        done = await files_done(conn, batch_id)
        raise TimeoutError(f"peer batch {batch_id}: {done} of {files} done in {timeout_s:.0f}s")
    finally:
        conn.close()


async def drop_tables(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        async with conn.cursor() as cursor:
            for table in (LOG_TABLE, STATE_TABLE):
                await cursor.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.commit()
    finally:
        conn.close()


async def run_peer(
    config: PeerConfig,
    batches: Sequence[Sequence[Path]],
    warmup: Sequence[Path],
    rate: float,
    log_dir: Path,
) -> list[PeerRun]:
    """Start the peer, warm every hop up, then each batch at `rate` files a second."""
    chain = config.chain
    uploads = Topics(chain.prefix).uploads
    await ensure_topics(chain.bootstrap, chain.topics(), 4)
    await create_tables(config.database_url)
    group = ProcessGroup(log_dir=log_dir, env={})
    try:
        for role in peer_roles(chain.hosts):
            argv = [sys.executable, "-m", "bench.faust_peer", role, config.to_json()]
            group.start(f"peer-{role}", argv)
        await produce_uploads(chain.bootstrap, uploads, "peer-warmup", warmup, None)
        await wait_done(config.database_url, "peer-warmup", len(warmup), group, 300)
        pids = {name: p.popen.pid for name, p in group.processes.items()}
        runs = []
        for n, paths in enumerate(batches, 1):
            batch_id = f"peer-b{n}"
            before = {name: usage(pid).cpu_s for name, pid in pids.items()}
            broker_before = shared_usage().get(BROKER)
            started = time.monotonic()
            await produce_uploads(chain.bootstrap, uploads, batch_id, paths, rate)
            finished = await wait_done(config.database_url, batch_id, len(paths), group, 1800)
            after = {name: usage(pid).cpu_s for name, pid in pids.items()}
            broker_after = shared_usage().get(BROKER)
            run = PeerRun(
                files=len(paths),
                makespan_s=finished - started,
                cpu_s={name: after[name] - before[name] for name in pids},
                broker_cpu_s=cpu_between(broker_before, broker_after),
            )
            say(
                f"    faust peer batch {n}: {run.makespan_s:.1f} s, "
                f"{run.cpu_per_file * 1000:.2f} ms CPU per file"
            )
            runs.append(run)
        return runs
    finally:
        await asyncio.to_thread(group.stop_all)
        await drop_tables(config.database_url)


def ms_per_file_by_process(
    runs: Iterable[tuple[Mapping[str, float], int]],
) -> dict[str, list[float]]:
    """Each process's CPU per file (ms) over the runs, from (process -> CPU seconds, files)."""
    found: dict[str, list[float]] = {}
    for cpu_s, files in runs:
        for name, cpu in cpu_s.items():
            found.setdefault(name, []).append(cpu / files * 1000)
    return found


def peer_section(
    cofi: Sequence[TimedBatch], peer: Sequence[PeerRun], rate: float, chain: ChainConfig
) -> Section:
    cofi_ms = [control_plane_cpu(b.before, b.after) / b.files * 1000 for b in cofi]
    peer_ms = [r.cpu_per_file * 1000 for r in peer]
    ratio = spread(cofi_ms)[0] / spread(peer_ms)[0]
    section = Section(
        "Issue 21, figure 3: a fair peer on faust",
        [
            Figure.at_most(PEER_FIGURE, ratio, "ratio", 1.0),
            Figure.info("CPU per file at the paced rate: cofi", spread(cofi_ms)[0], "ms"),
            Figure.info("CPU per file at the paced rate: faust peer", spread(peer_ms)[0], "ms"),
        ],
    )
    peer_process = ms_per_file_by_process(
        ({n.removeprefix("peer-"): cpu for n, cpu in r.cpu_s.items()}, r.files) for r in peer
    )
    cofi_process = ms_per_file_by_process(
        (
            {n: cpu for n, cpu in services_cpu(b.before, b.after).items() if n not in NOT_PRODUCT},
            b.files,
        )
        for b in cofi
    )

    def listed(values: Sequence[float]) -> str:
        return spread_text(values, 2)

    section.details = [
        f"Both fed {cofi[0].files:,}-file batches at {rate:g} files/s (uploads sent in ten "
        f"slices a second), on the same simulator at instant models; CPU per file from the "
        f"first upload until every file is recorded done by the tracker, idling included, "
        f"the simulator left out. Median (lowest-highest) of {len(cofi)} cofi batches "
        f"({listed(cofi_ms)} ms) and {len(peer)} peer batches ({listed(peer_ms)} ms). "
        f"Makespans (s): cofi "
        + ", ".join(f"{b.makespan_s:.1f}" for b in cofi)
        + "; peer "
        + ", ".join(f"{r.makespan_s:.1f}" for r in peer)
        + ".",
        "",
        "The peer (`bench/faust_peer.py`): the chain's topics and processes "
        f"({', '.join(peer_roles(chain.hosts))}), one faust app each with an agent per hop "
        f"(concurrency {chain.capacity} per GPU hop, {chain.llm_concurrency} per LLM hop, 1 for "
        "the distributor's), pydantic events carrying each hop's answer, an input "
        "acknowledged only once its output was, and a tracker that writes every event with "
        "two `executemany` per poll. Per process (ms per file): "
        + ", ".join(f"{name} {listed(v)}" for name, v in peer_process.items())
        + ".",
    ]
    section.details += [
        "",
        "cofi per process (ms per file): "
        + ", ".join(f"{name} {listed(v)}" for name, v in cofi_process.items())
        + ".",
    ]
    cofi_broker = [v * 1000 for v in map(broker_cpu_per_file, cofi) if v is not None]
    peer_broker = [r.broker_cpu_s / r.files * 1000 for r in peer if r.broker_cpu_s is not None]
    if cofi_broker and peer_broker:
        section.details += [
            "",
            f"The broker beside them (ms per file, its CPU includes any other run here): "
            f"during cofi's batches {listed(cofi_broker)}, during the peer's "
            f"{listed(peer_broker)}.",
        ]
    return section
