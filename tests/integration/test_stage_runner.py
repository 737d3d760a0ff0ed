"""The shared consumer runtime against the real broker."""

import asyncio
import base64
import json
import operator
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.output import Output
from shared.runtime.offset_metadata import max_span
from shared.runtime.stage_runner import StageRunner
from tests.kafka_helpers import read_topic, wait_until
from tests.runner_helpers import Number, committed_offsets, produce_values, stage_runner


async def test_outputs_published_poison_dead_lettered_offsets_committed(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=2)
    await produce_values(kafka_bootstrap, src, [b"1", b"2", b"not-a-number", b"4"])

    async def double(n: int) -> Sequence[Output]:
        return [Output(dst, str(n).encode(), Number(n=n * 2))]

    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    group = f"{topic_prefix}-g"
    runner: StageRunner[int] = stage_runner(
        name="doubler",
        consumer=make_consumer(kafka_bootstrap, group, "doubler"),
        producer=producer,
        topics=[src],
        decode=lambda b: int(b),
        handle=double,
        dead_letter_topic=dlq,
        max_in_flight=3,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        out = await read_topic(kafka_bootstrap, [dst], lambda rs: len(rs) >= 3)
        dead = await read_topic(kafka_bootstrap, [dlq], lambda rs: len(rs) >= 1)
    finally:
        stop.set()
        await task
        await producer.stop()
    assert sorted(Number.model_validate_json(r.value).n for r in out) == [2, 4, 8]
    letter = json.loads(dead[0].value)
    assert letter["type"] == "DeadLetter"
    assert base64.b64decode(letter["value_b64"]) == b"not-a-number"
    assert letter["source_topic"] == src

    checker = make_consumer(kafka_bootstrap, group, "checker")
    await checker.start()
    try:
        committed = [await checker.committed(TopicPartition(src, p)) for p in (0, 1)]
    finally:
        await checker.stop()
    assert sum(c or 0 for c in committed) == 4  # all four records, poison included


async def test_a_slow_record_does_not_hold_back_the_records_after_it(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Offset 1 runs long. With two slots, the other slot goes on through 2..11, and the
    broker's commit says so: low-water mark 1, 2..11 finished in its metadata."""
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=1)
    await produce_values(kafka_bootstrap, src, [str(i).encode() for i in range(12)])
    release = asyncio.Event()
    finished: list[int] = []

    async def slow_on_one(n: int) -> Sequence[Output]:
        if n == 1:
            await release.wait()
        finished.append(n)
        return [Output(dst, None, Number(n=n))]

    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    group = f"{topic_prefix}-g"
    runner: StageRunner[int] = stage_runner(
        name="slow",
        consumer=make_consumer(kafka_bootstrap, group, "slow"),
        producer=producer,
        topics=[src],
        decode=lambda b: int(b),
        handle=slow_on_one,
        dead_letter_topic=dlq,
        max_in_flight=2,
        commit_interval_s=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    tp = TopicPartition(src, 0)
    try:
        await wait_until(lambda: len(finished) == 11, what="the eleven fast records finished")
        await wait_until(lambda: runner.held() == 1, what="their finish committed")
        assert await committed_offsets(kafka_bootstrap, group, [tp]) == {
            tp: (1, frozenset(range(2, 12)))
        }
        release.set()
        await wait_until(lambda: runner.held() == 0, what="the slow record committed")
        assert await committed_offsets(kafka_bootstrap, group, [tp]) == {tp: (12, frozenset())}
    finally:
        release.set()
        stop.set()
        await task
        await producer.stop()


async def test_a_trickle_shares_commits_and_a_full_consumer_commits_at_once(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Records arriving one by one, with slots to spare, are recorded together: by the commit
    that comes when their finishes fill the slots (or by the periodic one), not one commit
    each. With every slot held, a finish is committed at once, so a long commit interval
    does not hold the next record back."""
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=1)
    done: list[int] = []

    async def note(n: int) -> Sequence[Output]:
        done.append(n)
        return [Output(dst, None, Number(n=n))]

    def run_with(max_in_flight: int, commit_interval_s: float, group: str) -> StageRunner[int]:
        return stage_runner(
            name=group,
            consumer=make_consumer(kafka_bootstrap, f"{topic_prefix}-{group}", group),
            producer=producer,
            topics=[src],
            decode=lambda b: int(b),
            handle=note,
            dead_letter_topic=dlq,
            max_in_flight=max_in_flight,
            commit_interval_s=commit_interval_s,
        )

    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    try:
        trickle = run_with(4, 30.0, "trickle")
        commits: list[object] = []
        commit = trickle.consumer.commit

        async def counted(offsets: Any = None) -> None:
            commits.append(offsets)
            await commit(offsets)

        trickle.consumer.commit = counted  # type: ignore[method-assign]
        stop = asyncio.Event()
        task = asyncio.create_task(trickle.run(stop))
        try:
            await wait_until(lambda: bool(trickle.consumer.assignment()), what="assignment")
            for i in range(8):
                await produce_values(kafka_bootstrap, src, [str(i).encode()])
                await wait_until(partial(operator.contains, done, i), what=f"record {i} finished")
            await wait_until(lambda: trickle.held() == 0, what="the trickle committed")
        finally:
            stop.set()
            await task
        # One per record before; now one each time the finished records fill the 4 slots
        # (the 30 s tick does not come while they arrive).
        assert len(commits) == 2, commits

        # A second group over the same 8 records, one slot, a commit interval of a minute:
        # each record waits for the commit of the one before, which comes at its finish.
        done.clear()
        full = run_with(1, 60.0, "full")
        stop = asyncio.Event()
        task = asyncio.create_task(full.run(stop))
        try:
            await wait_until(lambda: len(done) == 8, timeout_s=20, what="all 8 through one slot")
        finally:
            stop.set()
            await task
    finally:
        await producer.stop()


async def test_at_the_metadata_bound_only_that_partition_waits(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A 64-byte metadata bound holds 240 finished offsets above the low-water mark.
    Partition 0's first record runs long: 1..240 finish, then partition 0 is paused while
    partition 1 goes through all its records; once the slow record ends, partition 0 resumes."""
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=2)
    span = max_span(64)
    per_partition = span + 60
    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    acks = [
        await producer.send(src, f"{p}:{i}".encode(), partition=p)
        for p in (0, 1)
        for i in range(per_partition)
    ]
    await asyncio.gather(*acks)
    release = asyncio.Event()
    done: dict[int, set[int]] = {0: set(), 1: set()}

    async def slow_first(value: tuple[int, int]) -> Sequence[Output]:
        partition, n = value
        if value == (0, 0):
            await release.wait()
        done[partition].add(n)
        return []

    def parse(raw: bytes) -> tuple[int, int]:
        p, n = raw.split(b":")
        return int(p), int(n)

    runner: StageRunner[tuple[int, int]] = stage_runner(
        name="bounded",
        consumer=make_consumer(kafka_bootstrap, f"{topic_prefix}-g", "bounded"),
        producer=producer,
        topics=[src],
        decode=parse,
        handle=slow_first,
        dead_letter_topic=dlq,
        max_in_flight=4,
        offset_metadata_max_bytes=64,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    tp0 = TopicPartition(src, 0)
    try:
        await wait_until(lambda: tp0 in runner.paused, what="partition 0 paused at the bound")
        await wait_until(lambda: len(done[1]) == per_partition, what="partition 1 all through")
        assert done[0] == set(range(1, span + 1)), "partition 0 stopped at the bound"
        assert runner.paused == {tp0}
        release.set()
        await wait_until(lambda: len(done[0]) == per_partition, what="partition 0 resumed")
        assert not runner.paused
    finally:
        release.set()
        stop.set()
        await task
        await producer.stop()


def _runner(
    bootstrap: str,
    topic_prefix: str,
    handle: Callable[[int], Awaitable[Sequence[Output]]],
    producer: AIOKafkaProducer,
    lookahead: int,
) -> StageRunner[int]:
    """One slot; the record's value is its call's seconds, the longest starts first."""
    return stage_runner(
        name="longest-first",
        consumer=make_consumer(bootstrap, f"{topic_prefix}-g", "longest-first"),
        producer=producer,
        topics=[f"{topic_prefix}.in"],
        decode=lambda b: int(b),
        handle=handle,
        dead_letter_topic=f"{topic_prefix}.failed",
        max_in_flight=1,
        commit_interval_s=0.05,
        priority=float,
        lookahead=lookahead,
    )


@dataclass
class _OneSlotCalls:
    """The model calls a one-slot runner makes; the first holds the slot until `release`."""

    dst: str
    release: asyncio.Event = field(default_factory=asyncio.Event)
    made: list[int] = field(default_factory=list)

    async def call(self, n: int) -> Sequence[Output]:
        self.made.append(n)
        if len(self.made) == 1:
            await self.release.wait()  # the slot stays busy while the rest is fetched ahead
        return [Output(self.dst, None, Number(n=n))]


async def _first_record(bootstrap: str, topic_prefix: str, seconds: int) -> _OneSlotCalls:
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(bootstrap, [src, dst, dlq], partitions=1)
    await produce_values(bootstrap, src, [str(seconds).encode()])
    return _OneSlotCalls(dst)


async def test_records_fetched_ahead_start_longest_call_first(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    calls = await _first_record(kafka_bootstrap, topic_prefix, 5)
    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    runner = _runner(kafka_bootstrap, topic_prefix, calls.call, producer, lookahead=6)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_until(lambda: calls.made == [5], what="the first record holding the slot")
        later = [str(s).encode() for s in [1, 9, 3, 7, 2, 8]]
        await produce_values(kafka_bootstrap, f"{topic_prefix}.in", later)
        await wait_until(lambda: len(runner.waiting) == 6, what="six records fetched ahead")
        calls.release.set()
        await wait_until(lambda: len(calls.made) == 7, what="every record started")
        await wait_until(lambda: runner.held() == 0, what="every record committed")
    finally:
        calls.release.set()
        stop.set()
        await task
        await producer.stop()
    assert calls.made == [5, 9, 8, 7, 3, 2, 1]
    tp = TopicPartition(f"{topic_prefix}.in", 0)
    assert await committed_offsets(kafka_bootstrap, f"{topic_prefix}-g", [tp]) == {
        tp: (7, frozenset())
    }


async def test_a_stop_with_records_fetched_ahead_loses_and_redoes_none(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Records waiting for a slot made no call: a stop leaves them to the next consumer."""
    calls = await _first_record(kafka_bootstrap, topic_prefix, 4)
    group, tp = f"{topic_prefix}-g", TopicPartition(f"{topic_prefix}.in", 0)
    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    try:
        first = _runner(kafka_bootstrap, topic_prefix, calls.call, producer, lookahead=8)
        stop = asyncio.Event()
        task = asyncio.create_task(first.run(stop))
        await wait_until(lambda: calls.made == [4], what="the first record holding the slot")
        later = [str(s).encode() for s in [40, 400, 4000]]
        await produce_values(kafka_bootstrap, f"{topic_prefix}.in", later)
        await wait_until(lambda: len(first.waiting) == 3, what="three records fetched ahead")
        stop.set()
        calls.release.set()  # the one in flight finishes within the drain
        await task
        assert calls.made == [4]
        assert await committed_offsets(kafka_bootstrap, group, [tp]) == {tp: (1, frozenset())}

        second = _runner(kafka_bootstrap, topic_prefix, calls.call, producer, lookahead=8)
        stop = asyncio.Event()
        task = asyncio.create_task(second.run(stop))
        await wait_until(lambda: len(calls.made) == 4, what="the waiting records called")
        await wait_until(lambda: second.held() == 0, what="their finish committed")
        stop.set()
        await task
    finally:
        calls.release.set()
        await producer.stop()
    assert sorted(calls.made) == [4, 40, 400, 4000]  # each called once
    assert await committed_offsets(kafka_bootstrap, group, [tp]) == {tp: (4, frozenset())}
