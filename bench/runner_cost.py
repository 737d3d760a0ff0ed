"""`python -m bench.runner_cost`: CPU per record of the consumer runtime, backlog against trickle.

A development tool behind figure 1's analysis (bench/FINDINGS.md). One `StageRunner` (4 slots,
a GPU stage's look-ahead, priority and 100 ms long poll) reads a 4-partition topic on the
shared broker and publishes one event of a stage event's size per record; its handler makes
no call, so what is measured is the runtime and its Kafka client alone, in this process
only. The records are either all there at the start (a backlog: each fetch, produce and
commit carries many) or produced by a separate process at a steady rate (a trickle: each
carries about one), at the rate one GPU stage of one host sees in figure 1's batch (40 per
second), at the rate it would see at the bare chain's pace (120), and at a tenth of the first.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence

from bench.infra import delete_topics
from shared.events import Event
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.output import Output
from shared.runtime.publisher import Publisher
from shared.runtime.stage_runner import RunnerSettings, StageRunner, Work

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PARTITIONS = 4
# (records, records per second; 0: all produced before the runner starts)
RUNS = ((4000, 0.0), (2400, 120.0), (1200, 40.0), (150, 4.0))
IDLE_S = 20.0  # the idle run: no record, this long


class Payload(Event):
    n: int
    body: str = "x" * 400  # about a GPU stage event's size (figure 1: 416-959 bytes)


async def produce(topic: str, records: int, per_s: float) -> None:
    producer = make_producer(BOOTSTRAP, "runner-cost-source")
    await producer.start()
    try:
        if per_s == 0:
            acks = [await producer.send(topic, b"%d" % i, key=b"%d" % i) for i in range(records)]
            await asyncio.gather(*acks)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(records):
            await producer.send(topic, b"%d" % i, key=b"%d" % i)
            # Paced by the clock, so a slow send does not lower the rate.
            await asyncio.sleep(max(0.0, started + (i + 1) / per_s - loop.time()))
    finally:
        await producer.stop()


async def cpu_per_record(records: int, per_s: float) -> tuple[float, float]:
    """(CPU seconds of this process per record, wall seconds) from the runner's assignment to
    its last record finished."""
    prefix = f"runnercost{uuid.uuid4().hex[:8]}"
    source, out, dead = f"{prefix}.in", f"{prefix}.out", f"{prefix}.failed"
    await ensure_topics(BOOTSTRAP, [source, out, dead], partitions=PARTITIONS)
    if per_s == 0:
        await produce(source, records, 0)

    async def handle(n: int) -> Sequence[Output]:
        return [Output(out, b"%d" % n, Payload(n=n))]

    producer = make_producer(BOOTSTRAP, "runner-cost")
    await producer.start()
    runner: StageRunner[int] = StageRunner(
        RunnerSettings(name="runner-cost", topics=(source,), max_in_flight=4, lookahead=32),
        make_consumer(BOOTSTRAP, f"{prefix}-g", "runner-cost", fetch_max_wait_ms=100),
        Publisher(
            lambda: make_producer(BOOTSTRAP, "runner-cost"),
            service="runner-cost",
            dead_letter_topic=dead,
            producer=producer,
        ),
        Work(decode=int, handle=handle, priority=lambda n: float(n % 7)),
    )
    stop = asyncio.Event()
    source_process = None
    task = asyncio.create_task(runner.run(stop))
    try:
        # Timed from the group's assignment: joining it is a start-up cost, not a record's.
        while not runner.consumer.assignment():
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        cpu, wall = time.process_time(), time.monotonic()
        if per_s:
            argv = [sys.executable, "-m", "bench.runner_cost", "produce", source, str(records)]
            source_process = subprocess.Popen([*argv, str(per_s)])
        if records == 0:
            await asyncio.sleep(IDLE_S)
        while runner.finished_count < records:
            if task.done():
                task.result()  # the runner's error, if it failed
            await asyncio.sleep(0.25)  # seldom: this loop is in the measured process
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    finally:
        stop.set()
        await task
        await producer.stop()
        if source_process is not None:
            source_process.wait(timeout=60)
        await delete_topics(BOOTSTRAP, prefix)
    return cpu / max(records, 1), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("produce", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        _, topic, records, per_s = args.produce
        asyncio.run(produce(topic, int(records), float(per_s)))
        return
    print(f"StageRunner, 4 slots, look-ahead 32, {PARTITIONS} partitions, broker {BOOTSTRAP}")
    idle_cpu, idle_wall = asyncio.run(cpu_per_record(0, 0.0))
    print(f"  {'idle':28s} {'':5s}          {idle_cpu / idle_wall * 1e3:6.1f} ms CPU per second")
    for records, per_s in RUNS:
        per_record, wall = asyncio.run(cpu_per_record(records, per_s))
        how = "backlog" if per_s == 0 else f"trickle, {per_s:g} records/s"
        cost = f"{per_record * 1e6:6.0f} us CPU per record"
        print(f"  {how:28s} {records:5d} records  {cost}  ({wall:.1f} s)")


if __name__ == "__main__":
    main()
