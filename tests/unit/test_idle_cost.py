"""An idle stage consumer costs little: its long poll lengthens (shared/runtime/idle_poll.py)
and its commit loop sleeps until progress moves (shared/runtime/committer.py)."""

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.structs import TopicPartition

from shared.output import Output
from shared.runtime.committer import Committer
from shared.runtime.idle_poll import IdlePoll, Runway
from shared.runtime.offsets import PartitionProgress
from shared.runtime.publisher import Publisher
from shared.runtime.stage_runner import RunnerSettings, StageRunner, Work
from tests.kafka_helpers import wait_until
from tests.unit.fake_kafka import FakeConsumer, FakeFetcher, FakeGroup, FakeProducer

pytestmark = pytest.mark.unit

TP = TopicPartition("cofi.in", 0)


class Assignment:
    tps = frozenset({TP, TopicPartition("cofi.in", 1)})


class Polled:
    def __init__(self, wait_ms: int) -> None:
        self._fetcher = FakeFetcher(wait_ms)

    @property
    def wait_ms(self) -> int:
        return self._fetcher._fetch_max_wait_ms

    @property
    def wake_s(self) -> float:
        return self._fetcher._fetcher_timeout


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_aiokafka_still_reads_the_fetch_wait_and_wake_up_from_its_fetcher() -> None:
    # The attributes the poll sets: an aiokafka upgrade that renames them fails here.
    assert "_fetch_max_wait_ms" in Fetcher.__init__.__code__.co_names
    assert "_fetcher_timeout" in Fetcher.__init__.__code__.co_names
    assert "_fetcher" in AIOKafkaConsumer.__init__.__code__.co_names
    assert "_records" in Fetcher.__init__.__code__.co_names
    assert "_get_actions_per_node" in Fetcher._fetch_requests_routine.__code__.co_names


def test_a_fetch_that_leaves_a_partition_out_stays_short_however_long_the_poll() -> None:
    consumer, clock = Polled(100), Clock()
    poll = IdlePoll(consumer, clock, idle_ms=2000, after_s=2.0)
    poll.polled(busy=True)  # caught up: 500 ms
    fetcher = consumer._fetcher
    fetcher._get_actions_per_node(Assignment())  # every partition in the fetch: long
    fetcher._records[TP] = object()  # a delivery not yet taken: the fetch leaves it out
    fetcher._get_actions_per_node(Assignment())
    assert fetcher.built_with == [500, 100]
    assert consumer.wait_ms == 500  # the state's own wait is back


def test_a_partition_left_untaken_past_the_short_wait_no_longer_shortens_the_fetch() -> None:
    """Its consumer's slots and look-ahead are full: its records wait in the fetcher, and the
    other partitions' fetch may wait as long as their state says."""
    consumer, clock = Polled(100), Clock()
    poll = IdlePoll(consumer, clock, idle_ms=2000, after_s=2.0)
    poll.polled(busy=True)  # caught up: 500 ms
    fetcher = consumer._fetcher
    fetcher._records[TP] = object()
    fetcher._get_actions_per_node(Assignment())  # delivered just now: short
    clock.now = 0.5
    fetcher._get_actions_per_node(Assignment())  # still untaken half a second later: long
    fetcher._records[TP] = object()  # taken, and a new delivery: short again
    fetcher._get_actions_per_node(Assignment())
    assert fetcher.built_with == [100, 500, 100]


def test_the_poll_lengthens_after_idling_and_shortens_with_the_first_record() -> None:
    consumer, clock = Polled(100), Clock()
    poll = IdlePoll(consumer, clock, idle_ms=2000, after_s=2.0)
    clock.now = 1.9
    poll.polled(busy=False)
    assert consumer.wait_ms == 100  # not idle long enough
    clock.now = 2.1
    poll.polled(busy=False)
    assert (consumer.wait_ms, consumer.wake_s) == (2000, 2.0)
    clock.now = 9.0
    poll.polled(busy=True, behind=True)
    assert (consumer.wait_ms, consumer.wake_s) == (100, 0.2)
    clock.now = 10.0
    poll.polled(busy=False)
    assert consumer.wait_ms == 100  # idle again only after 2 s


def test_a_consumer_caught_up_polls_at_kafkas_default_and_short_only_while_behind() -> None:
    consumer, clock = Polled(100), Clock()
    poll = IdlePoll(consumer, clock, idle_ms=2000, after_s=2.0)
    for second in range(1, 6):
        clock.now = float(second)
        poll.polled(busy=True)  # a record in flight, none waiting: not idle, not behind
        assert (consumer.wait_ms, consumer.wake_s) == (500, 0.5)
    assert poll.recheck_s(0.2) == 0.5
    poll.polled(busy=True, behind=True)  # the broker holds more: top the look-ahead up
    assert consumer.wait_ms == 100 and poll.recheck_s(0.2) == 0.2
    poll.polled(busy=True)
    assert consumer.wait_ms == 500


def test_behind_with_a_look_ahead_that_outlasts_a_caught_up_poll_polls_as_caught_up() -> None:
    # A backlog at a GPU's real speed: the records waiting for a slot last seconds, so a
    # short poll over the partitions that have nothing would only come back empty.
    consumer, clock = Polled(100), Clock()
    poll = IdlePoll(consumer, clock, idle_ms=2000, after_s=2.0)
    poll.polled(busy=True, behind=True, runway_s=0.3)  # runs out before 500 ms: top it up
    assert (consumer.wait_ms, poll.recheck_s(0.2)) == (100, 0.2)
    poll.polled(busy=True, behind=True, runway_s=0.5)
    assert (consumer.wait_ms, poll.recheck_s(0.2)) == (500, 0.5)
    poll.polled(busy=True, behind=True)  # nothing waits for a slot: no runway
    assert consumer.wait_ms == 100


def test_a_runway_is_the_waiting_records_at_the_recent_time_between_starts() -> None:
    clock = Clock()
    runway = Runway(clock)
    assert runway.seconds(3) == 0.0  # no start yet: no runway, the poll stays short
    runway.started()
    assert runway.seconds(3) == 0.0  # one start: no gap yet
    clock.now = 1.0
    runway.started()
    assert runway.seconds(3) == pytest.approx(3.0)
    assert runway.seconds(0) == 0.0
    clock.now = 1.1
    runway.started()  # the mean moves a fifth of the way to the new gap
    assert runway.gap_s == pytest.approx(0.82)
    clock.now = 5.1  # slots held 4 s since the last start: the runway grows with them
    assert runway.seconds(3) == pytest.approx(12.0)


def test_zero_disables_it_and_a_longer_configured_wait_is_kept() -> None:
    clock = Clock()
    disabled = Polled(100)
    off = IdlePoll(disabled, clock, idle_ms=0)
    clock.now = 60.0
    off.polled(busy=False)
    off.polled(busy=True)
    assert (disabled.wait_ms, disabled.wake_s) == (100, 0.2)
    long = Polled(800)
    poll = IdlePoll(long, clock, idle_ms=2000)
    poll.polled(busy=True)
    assert long.wait_ms == 800


def test_a_consumer_without_the_attributes_keeps_its_poll() -> None:
    clock = Clock()
    poll = IdlePoll(object(), clock, idle_ms=2000)
    clock.now = 60.0
    poll.polled(busy=False)  # nothing to set: no error
    assert not poll.idle


async def test_the_commit_loop_sleeps_until_a_record_finishes() -> None:
    group = FakeGroup()
    consumer = FakeConsumer({TP: [b"1"]}, group)
    committer = Committer("test", consumer, interval_s=0.01)
    committer.progress[TP] = progress = PartitionProgress()
    stop = asyncio.Event()
    task = asyncio.create_task(committer.run(stop))
    await asyncio.sleep(0.1)  # ten intervals with nothing to do
    assert group.commit_calls == 0 and not committer.changed.is_set()
    progress.admit(0)
    progress.finish(0)
    committer.touch()
    for _ in range(100):
        if group.commit_calls:
            break
        await asyncio.sleep(0.01)
    assert group.commits[TP].offset == 1
    stop.set()
    task.cancel()


def test_an_idle_consumer_waits_longer_in_each_poll_here_too() -> None:
    consumer, clock = Polled(100), Clock()
    poll = IdlePoll(consumer, clock, idle_ms=2000, after_s=2.0)
    assert poll.getmany_timeout_ms(200) == 200
    clock.now = 3.0
    poll.polled(busy=False)
    assert poll.getmany_timeout_ms(200) == 1000
    poll.polled(busy=True)
    assert poll.getmany_timeout_ms(200) == 200


async def test_a_runner_polls_short_while_records_wait_on_the_broker_and_not_after() -> None:
    release = asyncio.Event()

    async def hold_until_released(n: int) -> Sequence[Output]:
        await release.wait()
        return []

    consumer = FakeConsumer({TP: [b"1", b"2", b"3"]}, FakeGroup())
    consumer._fetcher = FakeFetcher(100)  # type: ignore[attr-defined]
    runner: StageRunner[int] = StageRunner(
        RunnerSettings(name="t", topics=(TP.topic,), max_in_flight=1, idle_fetch_wait_ms=2000),
        consumer,
        Publisher(
            FakeProducer, service="t", dead_letter_topic="cofi.failed", producer=FakeProducer()
        ),
        Work(decode=int, handle=hold_until_released),
        read_committed=consumer.group.read_committed,
    )
    fetcher = consumer._fetcher  # type: ignore[attr-defined]
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    # One slot: the first poll takes one record of three, so two wait on the broker.
    await wait_until(lambda: runner.held() == 1, timeout_s=10, what="one record held")
    assert fetcher._fetch_max_wait_ms == 100
    release.set()
    await wait_until(
        lambda: runner.finished_count == 3 and fetcher._fetch_max_wait_ms > 100,
        timeout_s=10,
        what=lambda: (
            f"caught up: {runner.finished_count} {runner.held()} {fetcher._fetch_max_wait_ms}"
        ),
    )
    stop.set()
    await task


async def test_a_runner_behind_with_a_long_look_ahead_runway_polls_as_caught_up() -> None:
    releases = [asyncio.Event() for _ in range(10)]

    async def hold_until_released(n: int) -> Sequence[Output]:
        await releases[n].wait()
        return []

    consumer = FakeConsumer({TP: [str(n).encode() for n in range(10)]}, FakeGroup())
    consumer._fetcher = FakeFetcher(100)  # type: ignore[attr-defined]
    runner: StageRunner[int] = StageRunner(
        RunnerSettings(
            name="t", topics=(TP.topic,), max_in_flight=1, lookahead=2, idle_fetch_wait_ms=2000
        ),
        consumer,
        Publisher(
            FakeProducer, service="t", dead_letter_topic="cofi.failed", producer=FakeProducer()
        ),
        Work(decode=int, handle=hold_until_released),
        read_committed=consumer.group.read_committed,
    )
    clock = Clock()
    runner.intake.runway = Runway(clock)
    fetcher = consumer._fetcher  # type: ignore[attr-defined]
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    # The first start: no time between starts known yet, so the look-ahead is topped up short.
    await wait_until(
        lambda: runner.held() == 1 and len(runner.waiting) == 2, timeout_s=10, what="look-ahead"
    )
    assert fetcher._fetch_max_wait_ms == 100
    clock.now = 10.0  # the first call took 10 s: two waiting records last 20 s
    releases[0].set()
    await wait_until(
        lambda: runner.finished_count == 1 and fetcher._fetch_max_wait_ms == 500,
        timeout_s=10,
        what=lambda: f"caught up: {runner.finished_count} {fetcher._fetch_max_wait_ms}",
    )
    stop.set()
    for release in releases:
        release.set()
    await task
