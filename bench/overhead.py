"""Figure 1: the orchestration's cost, as the pipeline's makespan over a bare Kafka chain's."""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.infra import mean_record_size, reader
from bench.pipeline import BenchPipeline, Snapshot, other_load
from bench.report import Figure, Section
from cli.report import BatchSummary
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


async def timed_batch(
    pipeline: BenchPipeline, batch_id: str, paths: Sequence[Path], timeout_s: float = 900
) -> TimedBatch:
    before = pipeline.snapshot()
    started = time.monotonic()
    await pipeline.submit(batch_id, paths)
    finished = await pipeline.wait_complete(batch_id, timeout_s)
    after = pipeline.snapshot()
    summary = await pipeline.summary(batch_id)
    if not summary.finished:
        raise RuntimeError(f"batch {batch_id} Complete but not every file is terminal: {summary}")
    return TimedBatch(batch_id, len(paths), finished - started, before, after, summary)


def hop_topics(prefix: str, host: str) -> list[str]:
    """The nine topics a file that is transcribed crosses on `host`, in flow order."""
    t = Topics(prefix)
    return [
        t.uploads,
        t.gpu("denoise", host),
        t.gpu("ivr", host),
        t.gpu("lid", host),
        t.triage,
        t.gpu("stt", host),
        t.llm("llm1"),
        t.llm("llm2"),
        t.done,
    ]


async def message_sizes(bootstrap: str, prefix: str, host: str) -> list[int]:
    async with reader(bootstrap) as consumer:
        return [await mean_record_size(consumer, topic) for topic in hop_topics(prefix, host)]


def overhead_section(
    batch: TimedBatch, chain_s: float, sizes: Sequence[int], sizes_from: str
) -> Section:
    ratio = batch.makespan_s / chain_s
    terminal = ", ".join(f"{k} {v:,}" for k, v in sorted(batch.summary.terminal.items()))
    section = Section(
        "1. Orchestration overhead",
        [
            Figure.at_most(
                "orchestration overhead (pipeline / bare Kafka chain)", ratio, "ratio", 1.5
            ),
            Figure.info("pipeline makespan, 10,000 files, instant models", batch.makespan_s, "s"),
            Figure.info("bare aiokafka chain makespan, same hops and sizes", chain_s, "s"),
            Figure.info(
                "pipeline throughput, instant models", batch.files / batch.makespan_s, "files/s"
            ),
        ],
    )
    section.details = [
        f"Pipeline: {batch.files:,} files (batch `{batch.batch_id}`: {terminal}) through every "
        f"service as a process, simulator at latency scale 0 (instant models), tracker writing "
        f"MariaDB; from the first upload event to `batchStatus.status = Complete` "
        f"(polled every 100 ms): {batch.makespan_s:.1f} s, "
        f"{batch.files / batch.makespan_s:,.0f} files/s. Other work on the machine used "
        f"{batch.other_load:.0%} of its CPU meanwhile.",
        f"Floor: eight `bench.passthrough` processes (consume, forward, wait for acks, commit; "
        f"the pipeline's client settings from `shared.kafka`) moving {batch.files:,} records "
        f"through nine topics with the pipeline's mean message size per topic (bytes, "
        f"{sizes_from}): {', '.join(str(s) for s in sizes)}: {chain_s:.2f} s. Every record "
        f"crosses all eight hops, while the pipeline's triaged-out files skip the last three.",
    ]
    return section
