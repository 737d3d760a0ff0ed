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

from shared.events import Event
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.output import Output
from shared.runtime.committed import committed_with_metadata
from shared.runtime.offset_metadata import decode, max_span
from shared.runtime.stage_runner import StageRunner
from tests.kafka_helpers import read_topic, wait_until
from tests.runner_helpers import stage_runner


class Number(Event):
    """What the test stages publish: an event, which the runner encodes."""

    n: int


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = make_producer(bootstrap, "test")
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, key=b"k")  # one partition via one key
    finally:
        await producer.stop()


async def test_outputs_published_poison_dead_lettered_offsets_committed(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=2)
    await _produce(kafka_bootstrap, src, [b"1", b"2", b"not-a-number", b"4"])

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


async def _committed(
    bootstrap: str, group: str, tps: list[TopicPartition]
) -> dict[TopicPartition, tuple[int, frozenset[int]]]:
    """The group's commits as the broker holds them: position and finished offsets above."""
    checker = make_consumer(bootstrap, group, "checker")
    await checker.start()
    try:
        found = await committed_with_metadata(checker, tps)
    finally:
        await checker.stop()
    return {tp: (om.offset, decode(om.metadata, om.offset, 4096)) for tp, om in found.items()}


async def test_a_slow_record_does_not_hold_back_the_records_after_it(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Offset 1 runs long. With two slots, the other slot goes on through 2..11, and the
    broker's commit says so: low-water mark 1, 2..11 finished in its metadata."""
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=1)
    await _produce(kafka_bootstrap, src, [str(i).encode() for i in range(12)])
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
        assert await _committed(kafka_bootstrap, group, [tp]) == {tp: (1, frozenset(range(2, 12)))}
        release.set()
        await wait_until(lambda: runner.held() == 0, what="the slow record committed")
        assert await _committed(kafka_bootstrap, group, [tp]) == {tp: (12, frozenset())}
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
                await _produce(kafka_bootstrap, src, [str(i).encode()])
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


async def test_a_restart_after_a_hard_stop_redoes_only_the_unfinished_records(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Offsets 3 and 7 never finish; the rest do. The consumer then dies without draining
    or committing again (a kill -9). A new consumer of the group skips every finished offset
    above the low-water mark and redoes exactly 3 and 7."""
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=1)
    await _produce(kafka_bootstrap, src, [str(i).encode() for i in range(20)])
    stuck = {3, 7}
    never = asyncio.Event()
    first_did: list[int] = []

    async def stuck_on_some(n: int) -> Sequence[Output]:
        if n in stuck:
            await never.wait()
        first_did.append(n)
        return [Output(dst, None, Number(n=n))]

    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    group = f"{topic_prefix}-g"
    tp = TopicPartition(src, 0)
    first: StageRunner[int] = stage_runner(
        name="first",
        consumer=make_consumer(kafka_bootstrap, group, "first"),
        producer=producer,
        topics=[src],
        decode=lambda b: int(b),
        handle=stuck_on_some,
        dead_letter_topic=dlq,
        max_in_flight=4,
        drain_timeout_s=0.1,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    second_did: list[int] = []
    try:
        await wait_until(lambda: len(first_did) == 18, what="all but the two stuck records")
        await wait_until(lambda: first.held() == 2, what="their finish committed")

        async def no_commit(only: set[TopicPartition] | None = None) -> None:
            return None

        first.committer.commit = no_commit  # type: ignore[method-assign]  # dead: commits nothing more
        stop.set()
        await task
        finished = frozenset(range(20)) - stuck - {0, 1, 2}
        assert await _committed(kafka_bootstrap, group, [tp]) == {tp: (3, finished)}

        async def again(n: int) -> Sequence[Output]:
            second_did.append(n)
            return []

        second: StageRunner[int] = stage_runner(
            name="second",
            consumer=make_consumer(kafka_bootstrap, group, "second"),
            producer=producer,
            topics=[src],
            decode=lambda b: int(b),
            handle=again,
            dead_letter_topic=dlq,
            max_in_flight=4,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(second.run(stop))
        await wait_until(lambda: second.skipped_count == len(finished), what="finished skipped")
        await wait_until(lambda: sorted(second_did) == sorted(stuck), what="3 and 7 redone")
        await wait_until(lambda: second.held() == 0, what="the redone records committed")
        stop.set()
        await task
    finally:
        never.set()
        stop.set()
        await task
        await producer.stop()
    assert sorted(second_did) == [3, 7]
    assert await _committed(kafka_bootstrap, group, [tp]) == {tp: (20, frozenset())}


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


async def test_a_rebalance_commits_what_finished_and_loses_nothing(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A second consumer joins mid-stream: the first commits its finished prefix on revoke,
    and every record is processed at least once between them."""
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=4)
    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    try:
        acks = [await producer.send(src, str(i).encode(), key=str(i).encode()) for i in range(400)]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()

    seen: list[int] = []
    joined = asyncio.Event()

    async def slow(n: int) -> Sequence[Output]:
        # Slower until the second consumer has joined, so that work is left for it.
        await asyncio.sleep(0.05 if joined.is_set() else 0.2)
        seen.append(n)
        return [Output(dst, str(n).encode(), Number(n=n))]

    group = f"{topic_prefix}-g"
    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()

    def runner(name: str) -> StageRunner[int]:
        return stage_runner(
            name=name,
            consumer=make_consumer(kafka_bootstrap, group, name),
            producer=producer,
            topics=[src],
            decode=lambda b: int(b),
            handle=slow,
            dead_letter_topic=dlq,
            max_in_flight=4,
        )

    first, second = runner("first"), runner("second")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    task_first = asyncio.create_task(first.run(stop_first))
    try:
        await wait_until(lambda: len(seen) >= 30, what="the first consumer under way")
        task_second = asyncio.create_task(second.run(stop_second))
        await wait_until(lambda: bool(second.consumer.assignment()), what="partitions moved")
        joined.set()
        await wait_until(lambda: len(set(seen)) == 400, timeout_s=60, what="all 400 records")
        stop_first.set()
        stop_second.set()
        await asyncio.gather(task_first, task_second)
    finally:
        stop_first.set()
        stop_second.set()
        await producer.stop()

    assert second.finished_count > 0, "the second consumer got partitions"
    # Redone work is bounded by what was in flight when partitions moved.
    assert len(seen) - 400 <= 2 * 4
    checker = make_consumer(kafka_bootstrap, group, "checker")
    await checker.start()
    try:
        committed = [await checker.committed(TopicPartition(src, p)) or 0 for p in range(4)]
    finally:
        await checker.stop()
    assert sum(committed) == 400


async def test_a_crash_redoes_at_most_max_in_flight_records(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A record keeps its slot until a commit records it finished: a consumer that dies at
    any moment leaves at most `max_in_flight` records published but unrecorded, however fast
    it ran."""
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=2)
    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    acks = [await producer.send(src, str(i).encode(), key=str(i).encode()) for i in range(300)]
    await asyncio.gather(*acks)

    published: list[int] = []
    dead = asyncio.Event()
    never = asyncio.Event()

    async def fast(n: int) -> Sequence[Output]:
        if dead.is_set():
            await never.wait()  # a dead process finishes nothing more
        if len(published) == 150:
            dead.set()  # the crash: from here on nothing finishes and nothing is committed
            await never.wait()
        published.append(n)
        return [Output(dst, str(n).encode(), Number(n=n))]

    group = f"{topic_prefix}-g"
    first: StageRunner[int] = stage_runner(
        name="first",
        consumer=make_consumer(kafka_bootstrap, group, "first"),
        producer=producer,
        topics=[src],
        decode=lambda b: int(b),
        handle=fast,
        dead_letter_topic=dlq,
        max_in_flight=4,
        drain_timeout_s=0.1,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    try:
        await wait_until(dead.is_set, what="150 records through")

        async def no_commit(only: set[TopicPartition] | None = None) -> None:
            return None

        first.committer.commit = no_commit  # type: ignore[method-assign]
        stop.set()
        await task
    finally:
        stop.set()
        never.set()

    redone: list[int] = []

    async def again(n: int) -> Sequence[Output]:
        redone.append(n)
        return []

    second: StageRunner[int] = stage_runner(
        name="second",
        consumer=make_consumer(kafka_bootstrap, group, "second"),
        producer=producer,
        topics=[src],
        decode=lambda b: int(b),
        handle=again,
        dead_letter_topic=dlq,
        max_in_flight=4,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    try:
        await wait_until(lambda: len(set(published) | set(redone)) == 300, what="all 300")
    finally:
        stop.set()
        await task
        await producer.stop()
    twice = set(published) & set(redone)
    assert len(twice) <= 4, f"redone after the crash: {sorted(twice)}"


async def test_a_consumer_joining_makes_nobody_redo_a_record(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """On a rebalance the revoked partitions' records finish and are committed before the
    partitions move, so scaling up (or down) processes every record exactly once."""
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=4)
    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    acks = [await producer.send(src, str(i).encode(), key=str(i).encode()) for i in range(300)]
    await asyncio.gather(*acks)
    seen: list[int] = []
    joined = asyncio.Event()

    async def slow(n: int) -> Sequence[Output]:
        # Slower until the second consumer has joined, so that work is left for it.
        await asyncio.sleep(0.05 if joined.is_set() else 0.2)
        seen.append(n)
        return [Output(dst, str(n).encode(), Number(n=n))]

    group = f"{topic_prefix}-g"

    def runner(name: str) -> StageRunner[int]:
        return stage_runner(
            name=name,
            consumer=make_consumer(kafka_bootstrap, group, name),
            producer=producer,
            topics=[src],
            decode=lambda b: int(b),
            handle=slow,
            dead_letter_topic=dlq,
            max_in_flight=4,
        )

    first, second = runner("first"), runner("second")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    task_first = asyncio.create_task(first.run(stop_first))
    tasks = [task_first]
    try:
        await wait_until(lambda: len(seen) >= 30, what="the first consumer under way")
        tasks.append(asyncio.create_task(second.run(stop_second)))
        await wait_until(lambda: bool(second.consumer.assignment()), what="partitions moved")
        joined.set()
        await wait_until(lambda: second.finished_count > 0, what="the second consumer working")
        await wait_until(lambda: len(set(seen)) == 300, timeout_s=60, what="all 300 records")
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(*tasks)
        await producer.stop()
    assert len(seen) == 300, f"redone: {sorted(n for n in set(seen) if seen.count(n) > 1)}"


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
    await _produce(bootstrap, src, [str(seconds).encode()])
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
        await _produce(kafka_bootstrap, f"{topic_prefix}.in", later)
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
    assert await _committed(kafka_bootstrap, f"{topic_prefix}-g", [tp]) == {tp: (7, frozenset())}


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
        await _produce(kafka_bootstrap, f"{topic_prefix}.in", later)
        await wait_until(lambda: len(first.waiting) == 3, what="three records fetched ahead")
        stop.set()
        calls.release.set()  # the one in flight finishes within the drain
        await task
        assert calls.made == [4]
        assert await _committed(kafka_bootstrap, group, [tp]) == {tp: (1, frozenset())}

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
    assert await _committed(kafka_bootstrap, group, [tp]) == {tp: (4, frozenset())}
