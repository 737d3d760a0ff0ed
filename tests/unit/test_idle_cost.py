"""An idle stage consumer costs little: its long poll lengthens (shared/runtime/idle_poll.py)
and its commit loop sleeps until progress moves (shared/runtime/committer.py)."""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.structs import TopicPartition

from shared.runtime.committer import Committer
from shared.runtime.idle_poll import IdlePoll
from shared.runtime.offsets import PartitionProgress
from tests.unit.fake_kafka import FakeConsumer, FakeGroup

pytestmark = pytest.mark.unit

TP = TopicPartition("cofi.in", 0)


class FakeFetcher:
    def __init__(self, wait_ms: int) -> None:
        self._fetch_max_wait_ms = wait_ms


class Polled:
    def __init__(self, wait_ms: int) -> None:
        self._fetcher = FakeFetcher(wait_ms)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_aiokafka_still_reads_the_fetch_wait_from_its_fetcher() -> None:
    # The attribute the idle poll sets: an aiokafka upgrade that renames it fails here.
    assert "_fetch_max_wait_ms" in Fetcher.__init__.__code__.co_names
    assert "_fetcher" in AIOKafkaConsumer.__init__.__code__.co_names


def test_the_poll_lengthens_after_idling_and_shortens_with_the_first_record() -> None:
    consumer, clock = Polled(100), Clock()
    poll = IdlePoll(consumer, clock, idle_ms=2000, after_s=2.0)
    clock.now = 1.9
    poll.polled(busy=False)
    assert consumer._fetcher._fetch_max_wait_ms == 100  # not idle long enough
    clock.now = 2.1
    poll.polled(busy=False)
    assert consumer._fetcher._fetch_max_wait_ms == 2000
    clock.now = 9.0
    poll.polled(busy=True)
    assert consumer._fetcher._fetch_max_wait_ms == 100
    clock.now = 10.0
    poll.polled(busy=False)
    assert consumer._fetcher._fetch_max_wait_ms == 100  # idle again only after 2 s


def test_held_records_keep_the_short_poll_and_zero_disables_it() -> None:
    consumer, clock = Polled(100), Clock()
    poll = IdlePoll(consumer, clock, idle_ms=2000, after_s=2.0)
    for second in range(1, 6):
        clock.now = float(second)
        poll.polled(busy=True)  # a record in flight: the consumer is not idle
    assert consumer._fetcher._fetch_max_wait_ms == 100
    disabled = Polled(100)
    clock.now = 0.0
    off = IdlePoll(disabled, clock, idle_ms=0)
    clock.now = 60.0
    off.polled(busy=False)
    assert disabled._fetcher._fetch_max_wait_ms == 100


def test_a_consumer_without_the_attribute_keeps_its_poll() -> None:
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
