"""The stage runner's parts (intake, publisher, committer) together, on in-memory clients.

The broker tests (tests/integration/test_stage_runner.py) show the same on a real broker;
these show what needs a fault the broker will not make on cue.
"""

import asyncio
import json
from collections.abc import Callable, Sequence

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber
from aiokafka.structs import TopicPartition

from shared.events import Event
from shared.output import Output
from shared.runtime.offset_metadata import decode
from shared.runtime.publisher import Publisher
from shared.runtime.stage_runner import Handler, RunnerSettings, StageRunner, Work
from tests.kafka_helpers import wait_until
from tests.unit.fake_kafka import FakeConsumer, FakeGroup, FakeProducer

pytestmark = pytest.mark.unit

TP = TopicPartition("cofi.in", 0)


class Number(Event):
    n: int


def build(
    values: Sequence[bytes],
    handle: Handler[int],
    *,
    group: FakeGroup | None = None,
    new_producer: Callable[[], FakeProducer] | None = None,
    producer: FakeProducer | None = None,
    max_in_flight: int = 4,
    paused: Callable[[], bool] | None = None,
    drain_timeout_s: float = 30.0,
) -> tuple[StageRunner[int], FakeConsumer, Publisher]:
    group = group or FakeGroup()
    consumer = FakeConsumer({TP: values}, group)
    publisher = Publisher(
        new_producer or FakeProducer,
        service="test",
        dead_letter_topic="cofi.failed",
        producer=producer or FakeProducer(),
    )
    runner: StageRunner[int] = StageRunner(
        RunnerSettings(
            name="test",
            topics=(TP.topic,),
            max_in_flight=max_in_flight,
            drain_timeout_s=drain_timeout_s,
        ),
        consumer,
        publisher,
        Work(decode=int, handle=handle, paused=paused),
        read_committed=group.read_committed,
    )
    return runner, consumer, publisher


async def number_out(n: int) -> Sequence[Output]:
    return [Output("cofi.out", None, Number(n=n))]


def committed(group: FakeGroup) -> tuple[int, frozenset[int]]:
    om = group.commits[TP]
    return om.offset, decode(om.metadata, om.offset, 4096)


async def test_outputs_published_poison_dead_lettered_and_all_committed() -> None:
    producer = FakeProducer()
    runner, _, _ = build([b"1", b"2", b"nope", b"4"], number_out, producer=producer)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await wait_until(
        lambda: (
            TP in runner.committer.progress and runner.held() == 0 and runner.finished_count == 4
        ),
        timeout_s=10,
        what="four finished",
    )
    stop.set()
    await task
    assert sorted(
        json.loads(s.value or b"")["n"] for s in producer.sent if s.topic == "cofi.out"
    ) == [1, 2, 4]
    (letter,) = [s for s in producer.sent if s.topic == "cofi.failed"]
    assert "undecodable" in json.loads(letter.value or b"")["error"]
    assert committed(runner.consumer.group) == (4, frozenset())  # type: ignore[attr-defined]


async def test_a_slow_record_is_committed_as_the_mark_with_the_others_in_the_metadata() -> None:
    release = asyncio.Event()

    async def slow_on_one(n: int) -> Sequence[Output]:
        if n == 1:
            await release.wait()
        return await number_out(n)

    group = FakeGroup()
    runner, _, _ = build(
        [str(i).encode() for i in range(8)], slow_on_one, group=group, max_in_flight=2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await wait_until(
        lambda: runner.finished_count == 7 and runner.held() == 1,
        timeout_s=10,
        what="all but the slow one committed",
    )
    assert committed(group) == (1, frozenset(range(2, 8)))
    release.set()
    await wait_until(lambda: runner.held() == 0, timeout_s=10, what="the slow one committed")
    stop.set()
    await task
    assert committed(group) == (8, frozenset())


async def test_a_resumed_partition_skips_what_its_last_commit_names_finished() -> None:
    group = FakeGroup()
    release = asyncio.Event()
    done: list[int] = []

    async def stuck_on_zero(n: int) -> Sequence[Output]:
        if n == 0:
            await release.wait()
        done.append(n)
        return await number_out(n)

    first, _, _ = build(
        [str(i).encode() for i in range(6)], stuck_on_zero, group=group, drain_timeout_s=0.1
    )
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await wait_until(
        lambda: committed(group) == (0, frozenset(range(1, 6))) if TP in group.commits else False,
        timeout_s=10,
        what="1..5 committed",
    )
    stop.set()  # record 0 outlasts the drain: cancelled, never finished
    await task
    done.clear()
    second, _, _ = build([str(i).encode() for i in range(6)], stuck_on_zero, group=group)
    release.set()
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    await wait_until(lambda: committed(group) == (6, frozenset()), timeout_s=10, what="resumed")
    stop.set()
    await task
    assert done == [0], "only the unfinished record is redone"
    assert second.skipped_count == 5


async def test_no_records_start_while_the_stage_is_paused() -> None:
    pause = True
    runner, consumer, _ = build([b"1", b"2"], number_out, paused=lambda: pause)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await wait_until(lambda: TP in consumer.paused_tps, timeout_s=10, what="paused")
    assert runner.finished_count == 0
    pause = False
    await wait_until(lambda: runner.finished_count == 2, timeout_s=10, what="resumed")
    stop.set()
    await task


async def test_a_broken_producer_is_replaced_and_its_record_is_not_committed_meanwhile() -> None:
    """Issue 19, item 2: a delivery failing with OutOfOrderSequenceNumber would fail forever
    on the same producer. The record holds the mark until the replacement publishes it, and
    the publisher says it is not ready meanwhile."""
    first = FakeProducer("first")
    first.broken = OutOfOrderSequenceNumber("sequence lost")
    replacement_may_start = asyncio.Event()
    made: list[FakeProducer] = []

    class Held(FakeProducer):
        async def start(self) -> None:
            await replacement_may_start.wait()
            await super().start()

    def new_producer() -> FakeProducer:
        made.append(Held("second"))
        return made[-1]

    group = FakeGroup()
    runner, _, publisher = build(
        [b"1", b"2", b"3"], number_out, group=group, new_producer=new_producer, producer=first
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await wait_until(lambda: bool(made), timeout_s=10, what="a replacement asked for")
    await asyncio.sleep(0.3)  # commits keep coming meanwhile (the interval is 0.2 s)
    assert publisher.problem() is not None and "OutOfOrderSequenceNumber" in publisher.problem()  # type: ignore[operator]
    assert group.commits.get(TP) is None or group.commits[TP].offset == 0
    replacement_may_start.set()
    await wait_until(
        lambda: TP in group.commits and committed(group) == (3, frozenset()),
        timeout_s=10,
        what="published through the replacement",
    )
    stop.set()
    await task
    assert first.stopped and first.sent == []
    assert sorted(json.loads(s.value or b"")["n"] for s in made[0].sent) == [1, 2, 3]
    assert publisher.problem() is None


async def test_a_revocation_lets_its_records_finish_and_commits_them_first() -> None:
    release = asyncio.Event()

    async def slow(n: int) -> Sequence[Output]:
        await release.wait()
        return await number_out(n)

    group = FakeGroup()
    runner, _, _ = build([b"1", b"2"], slow, group=group)
    runner.committer.interval_s = 60.0  # only the revocation commits
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await wait_until(lambda: len(runner.tasks) == 2, timeout_s=10, what="both started")
    revoking = asyncio.create_task(runner.on_revoked({TP}))
    await asyncio.sleep(0.05)
    assert not revoking.done(), "the revocation waits for the running records"
    release.set()
    await revoking
    assert committed(group) == (2, frozenset())
    assert TP not in runner.committer.progress
    stop.set()
    await task
