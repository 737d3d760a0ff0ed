"""The floor for figure 1: a bare aiokafka chain over as many hops as the pipeline has.

Each hop is a process that consumes a topic, forwards every record to the next topic as a
payload of the size the pipeline's message has there, waits for the broker's acks and commits:
no parsing, no model call, no database. It uses the pipeline's own client settings
(`shared.kafka`), so the comparison is the orchestration's cost, not a different tuning.

`python -m bench.passthrough SOURCE SINK SIZE GROUP` runs one hop until SIGTERM.
"""

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka.structs import TopicPartition

from bench.infra import end_offsets, reader
from bench.procfs import usage
from cli.processes import ProcessGroup
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.runtime.lifecycle import stop_event_on_signals


async def hop(bootstrap: str, source: str, sink: str, size: int, group: str) -> None:
    stop = stop_event_on_signals()
    consumer = make_consumer(bootstrap, group, f"{group}-consumer")
    producer = make_producer(bootstrap, f"{group}-producer")
    payload = b"x" * size
    consumer.subscribe([source])
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            if not batch:
                continue
            acks = [
                await producer.send(sink, payload, key=r.key) for rs in batch.values() for r in rs
            ]
            await asyncio.gather(*acks)
            positions: dict[TopicPartition, int] = {
                tp: rs[-1].offset + 1 for tp, rs in batch.items() if rs
            }
            await consumer.commit(positions)
    finally:
        await producer.stop()
        await consumer.stop()


async def produce(bootstrap: str, topic: str, count: int, size: int, tag: str) -> None:
    """The upload system's side of the chain: `count` records with per-file keys."""
    producer = make_producer(bootstrap, "bench-passthrough-upload")
    await producer.start()
    try:
        payload = b"x" * size
        pending = []
        for i in range(count):
            pending.append(await producer.send(topic, payload, key=f"{tag}/{i}".encode()))
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def wait_for_records(bootstrap: str, topic: str, count: int, timeout_s: float) -> float:
    """Wait until `topic` holds `count` records; returns that moment (monotonic)."""
    deadline = time.monotonic() + timeout_s
    async with reader(bootstrap) as consumer:
        while time.monotonic() < deadline:
            if (await end_offsets(consumer, [topic]))[topic] >= count:
                return time.monotonic()
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{topic} did not reach {count} records within {timeout_s:.0f}s")


async def chain_makespan(
    bootstrap: str,
    prefix: str,
    sizes: Sequence[int],
    files: int,
    log_dir: Path,
    partitions: int,
    warmup: int = 20,
) -> tuple[float, float]:
    """Seconds for `files` records through `len(sizes) - 1` hops (`sizes[i]`: topic i), and
    the CPU seconds the hop processes used meanwhile."""
    topics = [f"{prefix}.hop{i}" for i in range(len(sizes))]
    await ensure_topics(bootstrap, topics, partitions)
    group = ProcessGroup(log_dir=log_dir, env={})
    try:
        for i in range(len(sizes) - 1):
            argv = [sys.executable, "-m", "bench.passthrough", bootstrap, topics[i]]
            argv += [topics[i + 1], str(sizes[i + 1]), f"{prefix}-hop{i}"]
            group.start(f"hop{i}", argv)
        # A warm-up through every hop: each consumer has joined its group before timing.
        await produce(bootstrap, topics[0], warmup, sizes[0], "warmup")
        await wait_for_records(bootstrap, topics[-1], warmup, timeout_s=120)
        cpu_before = sum(usage(p.popen.pid).cpu_s for p in group.processes.values())
        started = time.monotonic()
        await produce(bootstrap, topics[0], files, sizes[0], "file")
        finished = await wait_for_records(bootstrap, topics[-1], warmup + files, timeout_s=600)
        cpu_after = sum(usage(p.popen.pid).cpu_s for p in group.processes.values())
        return finished - started, cpu_after - cpu_before
    finally:
        await asyncio.to_thread(group.stop_all)


def main(argv: Sequence[str]) -> None:
    bootstrap, source, sink, size, group = argv
    asyncio.run(hop(bootstrap, source, sink, int(size), group))


if __name__ == "__main__":
    main(sys.argv[1:])
