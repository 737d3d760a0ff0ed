"""Figure 4: a file's time through the eight hops under light load.

Files are uploaded one every `interval_s`; a file's latency is the time from its upload
event to its `done` event (both the producers' record timestamps, one clock). Files triaged
out reach `done` after five hops and are left out.
"""

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from bench.infra import partitions_of, reader
from bench.report import Figure, Section
from bench.stack import BenchPipeline
from bench.stats import percentile
from cli.upload import uploads_for
from shared.events import BatchClosed, encode
from shared.kafka import make_producer
from shared.pipeline import PIPELINE


async def paced_upload(
    pipeline: BenchPipeline, batch_id: str, paths: Sequence[Path], interval_s: float
) -> dict[str, int]:
    """Upload one file per interval (on a fixed schedule); file name -> upload time (ms)."""
    producer = make_producer(pipeline.config.bootstrap, "bench-latency-upload")
    await producer.start()
    sent: dict[str, int] = {}
    try:
        topic = pipeline.uploads_topic
        start = time.monotonic()
        for i, event in enumerate(uploads_for(batch_id, list(paths))):
            await asyncio.sleep(max(0.0, start + i * interval_s - time.monotonic()))
            meta = await producer.send_and_wait(topic, encode(event), key=batch_id.encode())
            sent[event.file_name] = meta.timestamp
        closed = BatchClosed(batch_id=batch_id, file_count=len(paths))
        await producer.send_and_wait(topic, encode(closed), key=batch_id.encode())
    finally:
        await producer.stop()
    return sent


async def done_times(
    pipeline: BenchPipeline, batch_id: str, start: dict[object, int]
) -> dict[str, int]:
    """File name -> `done` time (ms) of the batch's files that went through all eight hops."""
    topic = pipeline.config.settings().topics.done
    found: dict[str, int] = {}
    async with reader(pipeline.config.bootstrap) as consumer:
        parts = await partitions_of(consumer, [topic])
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, start.get(tp, 0))
        ends = await consumer.end_offsets(parts)
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    event = json.loads(r.value or b"{}")
                    if event.get("batch_id") == batch_id and event.get("stage") == LAST:
                        found[event["file_name"]] = r.timestamp
    return found


# The stages a transcribed file goes through, in order (triage is the distributor's decision).
STAGES = tuple(row.name for row in PIPELINE[1:])
LAST = PIPELINE[-1].name  # its completed event is on `done`


async def hop_gaps(
    pipeline: BenchPipeline, batch_id: str, sent: dict[str, int], done: dict[str, int]
) -> dict[str, list[float]]:
    """Per file, the time (ms) between one stage's end and the next one's start, from each
    attempt's start and duration in the tracker's tables; the model calls' time is under
    "model calls". Only files that went through all eight hops."""
    query = text(
        "SELECT call_id, stage_name, startedAt, durationMs FROM processing_logs "
        "WHERE batch_id = :b AND status = 'success'"
    )
    async with pipeline.engine.connect() as conn:
        attempts = (await conn.execute(query, {"b": batch_id})).all()
    uploaded = {name: float(at) for name, at in sent.items()}
    spans: dict[str, dict[str, tuple[float, float]]] = {}
    for file_name, stage, started, duration in attempts:
        spans.setdefault(file_name, {})[stage] = (ms(started), float(duration or 0))
    return gaps_per_hop(uploaded, spans, done)


def gaps_per_hop(
    uploaded: dict[str, float],
    spans: dict[str, dict[str, tuple[float, float]]],
    done: dict[str, int],
) -> dict[str, list[float]]:
    """Per hop, each file's time (ms) from one stage's end to the next one's start.

    `uploaded`: file -> upload time; `spans`: file -> stage -> (start, duration) of its
    successful attempt; `done`: file -> time of its `done` event. Files missing a stage are
    left out; the stages' own durations are listed under "model calls".
    """
    gaps: dict[str, list[float]] = {}
    for file_name, done_ms in done.items():
        stages = spans.get(file_name, {})
        if file_name not in uploaded or any(s not in stages for s in STAGES):
            continue
        previous_end, previous = uploaded[file_name], "upload"
        for stage in STAGES:
            start, duration = stages[stage]
            gaps.setdefault(f"{previous} -> {stage}", []).append(start - previous_end)
            gaps.setdefault("model calls", []).append(duration)
            previous_end, previous = start + duration, stage
        gaps.setdefault("llm2 -> done event", []).append(done_ms - previous_end)
    return gaps


def ms(at: datetime) -> float:
    """Milliseconds since the epoch of a naive UTC time from the tables."""
    return at.replace(tzinfo=UTC).timestamp() * 1000


async def light_load_latency(
    pipeline: BenchPipeline, batch_id: str, paths: Sequence[Path], interval_s: float
) -> Section:
    topic = pipeline.config.settings().topics.done
    async with reader(pipeline.config.bootstrap) as consumer:
        parts = await partitions_of(consumer, [topic])
        start: dict[object, int] = dict(await consumer.end_offsets(parts))
    sent = await paced_upload(pipeline, batch_id, paths, interval_s)
    await pipeline.wait_complete(batch_id, timeout_s=300)
    done = await done_times(pipeline, batch_id, start)
    latencies = [float(done[name] - sent[name]) for name in done]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    gaps = await hop_gaps(pipeline, batch_id, sent, done)
    model_calls = gaps.pop("model calls", [])
    hops = ", ".join(f"{name} {round(percentile(values, 50))}" for name, values in gaps.items())
    model_ms = sum(model_calls) / max(1, len(gaps.get("upload -> denoise", [])))
    section = Section(
        "4. Latency under light load",
        [
            Figure.at_most("end-to-end latency p50 (8 hops)", p50, "ms", 100),
            Figure.info("end-to-end latency p99 (8 hops)", p99, "ms"),
        ],
    )
    section.details = [
        f"{len(paths)} files, one every {interval_s * 1000:.0f} ms, instant simulated models; "
        f"{len(latencies)} went through all eight hops (the rest were triaged out). "
        f"Latency = `done` record time - upload record time: p50 {p50:.0f} ms, "
        f"p99 {p99:.0f} ms, max {max(latencies):.0f} ms.",
        f"Where a file's time goes (median ms per hop, from the tracker's tables: a stage's "
        f"end to the next one's start, i.e. publish, broker, fetch and decode): {hops}; "
        f"the model calls themselves take {model_ms:.0f} ms per file in all.",
    ]
    return section
