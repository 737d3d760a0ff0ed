"""The shared consumer runtime against the real broker, across a hard stop, a crash and a
rebalance: what finished stays committed, and at most what was in flight is done again."""

import asyncio
from collections.abc import Sequence

from aiokafka.structs import TopicPartition

from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.output import Output
from shared.runtime.stage_runner import StageRunner
from tests.kafka_helpers import wait_until
from tests.runner_helpers import Number, committed_offsets, produce_values, stage_runner


async def test_a_restart_after_a_hard_stop_redoes_only_the_unfinished_records(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Offsets 3 and 7 never finish; the rest do. The consumer then dies without draining
    or committing again (a kill -9). A new consumer of the group skips every finished offset
    above the low-water mark and redoes exactly 3 and 7."""
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=1)
    await produce_values(kafka_bootstrap, src, [str(i).encode() for i in range(20)])
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

        async def no_commit(only: set[TopicPartition] | None = None) -> bool:
            return True  # as if nothing were left to commit

        first.committer.commit = no_commit  # type: ignore[method-assign]  # dead: commits nothing more
        stop.set()
        await task
        finished = frozenset(range(20)) - stuck - {0, 1, 2}
        assert await committed_offsets(kafka_bootstrap, group, [tp]) == {tp: (3, finished)}

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
    assert await committed_offsets(kafka_bootstrap, group, [tp]) == {tp: (20, frozenset())}


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

        async def no_commit(only: set[TopicPartition] | None = None) -> bool:
            return True  # as if nothing were left to commit

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
