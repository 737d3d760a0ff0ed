"""Figure 1: the orchestration's cost, as the pipeline's CPU per file over a bare Kafka chain's
that makes the same model calls (`bench.model_chain`)."""

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.infra import mean_record_size, reader
from bench.model_chain import BROKER, IDLE_S, ChainRun
from bench.report import Figure, Section
from bench.stack import BenchPipeline, Snapshot, cpu_floor, other_load
from services.dashboard.summary import BatchSummary
from shared.pipeline import PIPELINE, input_topic
from shared.topics import Topics


@dataclass(frozen=True)
class TimedBatch:
    batch_id: str
    files: int
    makespan_s: float  # first upload event sent -> batchStatus says Complete
    before: Snapshot
    after: Snapshot
    summary: BatchSummary

    @property
    def other_load(self) -> float:
        return other_load(self.before, self.after)


@dataclass(frozen=True)
class Chain:
    """The bare chain's runs (the median by CPU per file is the figure's) and their sizes."""

    runs: Sequence[ChainRun]
    sizes: Mapping[str, int]  # bytes per record on each stage's input topic, and on done
    sizes_from: str  # where those sizes were measured
    # CPU seconds per second the pipeline's services (simulator excluded) used with no work,
    # measured while the chain ran (the pipeline idle meanwhile).
    pipeline_idle_cpu_per_s: float

    @property
    def median(self) -> ChainRun:
        ordered = sorted(self.runs, key=lambda r: r.total_cpu_s / r.files)
        return ordered[len(ordered) // 2]


class BatchWatcher(Protocol):
    async def follow(self, batch_id: str) -> None: ...

    def batch_finished(self, files: int) -> None: ...


async def timed_batch(
    pipeline: BenchPipeline,
    batch_id: str,
    paths: Sequence[Path],
    watcher: BatchWatcher | None = None,
    timeout_s: float = 1800,
    rate: float | None = None,
) -> TimedBatch:
    """`paths` as one batch, all at once or `rate` files a second, timed until Complete."""
    before = pipeline.snapshot()
    started = time.monotonic()
    following = asyncio.create_task(watcher.follow(batch_id)) if watcher else None
    try:
        await pipeline.submit(batch_id, paths, rate)
        finished = await pipeline.wait_complete(batch_id, timeout_s)
    finally:
        if following is not None:
            following.cancel()
    after = pipeline.snapshot()
    if watcher is not None:
        watcher.batch_finished(len(paths))
    summary = await pipeline.summary(batch_id)
    if not summary.finished:
        raise RuntimeError(f"batch {batch_id} Complete but not every file is terminal: {summary}")
    return TimedBatch(batch_id, len(paths), finished - started, before, after, summary)


def hop_topics(prefix: str, host: str) -> list[str]:
    """The topics a file that is transcribed crosses on `host`, in flow order: every stage's
    input, then `done`."""
    t = Topics(prefix)
    return [*(input_topic(row.name, t, host) for row in PIPELINE), t.done]


# The stage each of `hop_topics` feeds ("done" for the last).
HOP_STAGES = (*(row.name for row in PIPELINE), "done")


async def message_sizes(bootstrap: str, prefix: str, host: str) -> dict[str, int]:
    """Mean bytes per record on each stage's input topic (and done), on `host`'s topics."""
    async with reader(bootstrap) as consumer:
        return {
            stage: await mean_record_size(consumer, topic)
            for stage, topic in zip(HOP_STAGES, hop_topics(prefix, host), strict=True)
        }


def cpu_used(
    before: Mapping[str, float], after: Mapping[str, float], exclude: Collection[str] = ()
) -> float:
    """CPU seconds the processes used between two readings (process -> CPU seconds), those
    named in `exclude` left out. A process missing from `before` is refused: it was started
    (or restarted) in between, so its reading covers more than the measurement."""
    missing = set(after) - set(before) - set(exclude)
    if missing:
        raise ValueError(f"no reading before the measurement for {sorted(missing)}")
    return sum(after[name] - before[name] for name in after if name not in exclude)


def cpu_per_file(
    before: Mapping[str, float],
    after: Mapping[str, float],
    files: int,
    exclude: Collection[str] = (),
) -> float:
    """CPU seconds per file: `cpu_used` over the files the measurement moved."""
    if files <= 0:
        raise ValueError("no files to divide the CPU time by")
    return cpu_used(before, after, exclude) / files


def service_cpu(batch: TimedBatch) -> tuple[dict[str, float], dict[str, float]]:
    """(before, after) CPU seconds of each of the pipeline's processes."""
    before = {name: u.cpu_s for name, u in batch.before.services.items()}
    after = {name: u.cpu_s for name, u in batch.after.services.items()}
    return before, after


# What the pipeline's processes do per file that the bare chain's do not: the remaining CPU.
WHAT_IT_BUYS = (
    "What the difference buys, per file: every event decoded and validated against the shared "
    "models on the way in and built on the way out (a malformed or foreign record goes to "
    "`cofi.failed` as a dead letter with its raw bytes instead of down the line); completion "
    "tracked per record, with each commit carrying the finished offsets above the partition's "
    "low-water mark in its metadata (a slow call holds only its own slot; a kill -9 redoes only "
    "the calls in flight, a rebalance or SIGTERM nothing); retries with backoff and Retry-After, "
    "timeouts that grow with the call's audio, host health (a dead host fails fast) and a "
    "`FileFailed` for what cannot succeed, every attempt's request and answer carried in the "
    "event; duration-aware host assignment and rule-based triage; batch cancellation; the "
    "tracker's idempotent writes of `fileDistribution`, `processing_logs`, `batchStatus` and "
    "`batchExecutionLog` that the dashboards and operator tools read; Prometheus metrics per "
    "stage and host. The bare chain has none of these: a failed call stops it, a crash redoes "
    "or skips whatever its last poll held, and nothing records which file is where."
)

OVERHEAD_FIGURE = (
    "orchestration overhead (CPU per file, pipeline / bare chain with the same model calls)"
)


def overhead_section(batch: TimedBatch, chain: Chain) -> Section:
    run = chain.median
    before, after = service_cpu(batch)
    pipeline_cpu = cpu_per_file(before, after, batch.files, exclude=("simulator",))
    pipeline_sim = (after["simulator"] - before["simulator"]) / batch.files
    chain_cpu = run.total_cpu_s / run.files
    chain_sim = run.simulator_cpu_s / run.files
    ratio = pipeline_cpu / chain_cpu
    _, floor_text = cpu_floor(batch.before, batch.after, batch.files)
    terminal = ", ".join(f"{k} {v:,}" for k, v in sorted(batch.summary.terminal.items()))
    section = Section(
        "1. Orchestration overhead",
        [
            Figure.at_most(OVERHEAD_FIGURE, ratio, "ratio", 1.5),
            Figure.info(
                "CPU per file: pipeline services, simulator excluded", pipeline_cpu * 1000, "ms"
            ),
            Figure.info(
                "CPU per file: bare chain with the same model calls", chain_cpu * 1000, "ms"
            ),
            Figure.info(
                f"pipeline makespan, {batch.files:,} files, instant models", batch.makespan_s, "s"
            ),
            Figure.info("bare chain makespan, same calls and files", run.makespan_s, "s"),
            Figure.info(
                "pipeline throughput, instant models", batch.files / batch.makespan_s, "files/s"
            ),
        ],
    )
    per_process = ", ".join(
        f"{name} {(after[name] - before[name]) / batch.files * 1000:.2f}"
        for name in after
        if name != "simulator"
    )
    chain_per_process = ", ".join(
        f"{name.removeprefix('chain-')} {cpu / run.files * 1000:.2f}"
        for name, cpu in run.cpu_s.items()
    )
    idle_per_file = chain.pipeline_idle_cpu_per_s * batch.makespan_s / batch.files
    chain_idle_per_file = run.idle_cpu_per_s * run.makespan_s / run.files
    with_sim = (pipeline_cpu + pipeline_sim) / (chain_cpu + chain_sim)
    sizes = ", ".join(f"{stage} {size}" for stage, size in chain.sizes.items())
    section.details = [
        f"The figure: CPU time (user + system, every thread, /proc/<pid>/stat) the processes "
        f"used per file, the pipeline's over the bare chain's, both making the same model calls "
        f"on the same simulator (latency scale 0, instant models) for the same {batch.files:,} "
        f"files. Pipeline (distributor, four GPU-stage processes, LLM stage, tracker): "
        f"{pipeline_cpu * 1000:.2f} ms per file (per process: {per_process}). Bare chain "
        f"(`bench.model_chain`, the median of {len(chain.runs)} runs by CPU per file: "
        + ", ".join(f"{r.total_cpu_s / r.files * 1000:.2f}" for r in chain.runs)
        + f" ms): {chain_cpu * 1000:.2f} ms per file (per process: {chain_per_process}).",
        "",
        f"The simulator is excluded from both: it stands in for the GPU hosts and the LLM API "
        f"and serves the same calls in both runs ({pipeline_sim * 1000:.2f} ms per file in the "
        f"pipeline's batch, {chain_sim * 1000:.2f} in the chain's). Included in both, the ratio "
        f"would be {with_sim:.2f}. " + shared_text(batch, run, pipeline_cpu, chain_cpu),
        "",
        f"Part of the pipeline's figure is paid per second, not per file: with no work, its "
        f"services use {chain.pipeline_idle_cpu_per_s * 1000:.0f} ms of CPU per second "
        f"(measured while the bare chain ran and the pipeline waited; not broken down: the "
        f"fetch long-polls, heartbeats and metadata refreshes of one consumer per stage and "
        f"host plus the control-topic readers, the tracker's polls), "
        f"{idle_per_file * 1000:.2f} ms per file over this batch's makespan; the bare chain's "
        f"processes {run.idle_cpu_per_s * 1000:.0f} ms per second ({IDLE_S:g} s after its "
        f"warm-up), {chain_idle_per_file * 1000:.2f} ms per file over its makespan. Without "
        f"that per-second share on either side the ratio is "
        f"{(pipeline_cpu - idle_per_file) / (chain_cpu - chain_idle_per_file):.2f}. A longer "
        f"batch, or a machine with CPU to spare, makes that share smaller.",
        "",
        f"Bare chain: the pipeline's topics (uploads, each GPU stage's topic per host, triage, "
        f"llm1, llm2, done) and process layout (distributor: distribute and triage hops; "
        f"gpu-<host>: its four GPU hops; llm: both LLM hops); each hop consumes a poll's "
        f"records, makes one aiohttp POST per record (GPU stages on the file's host, at most "
        f"the host's capacity at a time; the LLM stages a minimal chat body, at most the LLM "
        f"stage's concurrency), produces to the next topic a payload of the pipeline's mean "
        f"message size there (bytes, {chain.sizes_from}: {sizes}), waits for the acks and "
        f"commits. The IVR and LID hops read `is_ivr` and `language` from the answer so triage "
        f"skips the same files: {run.files - run.transcribed:,} of {run.files:,} skipped in the "
        f"chain; the pipeline's batch `{batch.batch_id}`: {terminal}.",
        "",
        f"Makespans: pipeline {batch.makespan_s:.1f} s ({batch.files / batch.makespan_s:,.0f} "
        f"files/s, first upload event to `batchStatus.status = Complete`, polled every "
        f"100 ms); bare chain {run.makespan_s:.1f} s (first upload record to the last record on "
        f"done). " + floor_text,
        "",
        WHAT_IT_BUYS,
    ]
    return section


def shared_text(batch: TimedBatch, run: ChainRun, pipeline_cpu: float, chain_cpu: float) -> str:
    """The shared broker's and MariaDB's CPU per file, which the figure leaves out."""
    used = {
        name: (batch.after.shared[name].cpu_s - batch.before.shared[name].cpu_s) / batch.files
        for name in batch.after.shared
        if name in batch.before.shared
    }
    if not used:
        return "The broker's and MariaDB's processes were not found (no pid files)."
    text = (
        "The broker and MariaDB are left out: they serve every run on this machine, so their "
        "CPU includes other work. During the pipeline's batch they used (ms per file) "
        + ", ".join(f"{name} {v * 1000:.2f}" for name, v in used.items())
    )
    broker = used.get(BROKER)
    if broker is not None and run.broker_cpu_s is not None:
        chain_broker = run.broker_cpu_s / run.files
        text += (
            f"; the broker during the chain's run {chain_broker * 1000:.2f} (the chain writes no "
            f"database). With the broker and MariaDB added to the pipeline and the broker to "
            f"the chain, the ratio would be "
            f"{(pipeline_cpu + sum(used.values())) / (chain_cpu + chain_broker):.2f}"
        )
    return text + "."
