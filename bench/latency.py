"""Figure 4: a file's time through the eight hops under light load.

Files are uploaded one every `interval_s`; a file's latency is the time from its upload
event to its `done` event (both the producers' record timestamps, one clock). Files triaged
out reach `done` after five hops and are left out.
"""

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

from bench.infra import partitions_of, reader
from bench.pipeline import BenchPipeline
from bench.report import Figure, Section
from bench.stats import percentile
from cli.upload import uploads_for
from shared.events import BatchClosed, encode
from shared.kafka import make_producer


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
                    if event.get("batch_id") == batch_id and event.get("stage") == "llm2":
                        found[event["file_name"]] = r.timestamp
    return found


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
    ]
    return section
