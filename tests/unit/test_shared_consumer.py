"""Several stage runners over one consumer (`shared/runtime/shared_consumer.py`), in memory.

The broker test (tests/integration/test_shared_consumer.py) shows the same on a real broker.
"""

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

import pytest
from aiokafka import ConsumerRebalanceListener
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from shared.events import Event
from shared.output import Output
from shared.runtime.idle_poll import IdlePoll
from shared.runtime.publisher import Publisher
from shared.runtime.shared_consumer import SharedConsumer, StageView
from shared.runtime.stage_runner import RunnerSettings, StageRunner, Work
from tests.kafka_helpers import wait_until
from tests.unit.fake_kafka import FakeConsumer, FakeFetcher, FakeGroup, FakeProducer

pytestmark = pytest.mark.unit

DENOISE = TopicPartition("cofi.denoise.h1", 0)
STT = TopicPartition("cofi.stt.h1", 0)


class Number(Event):
    n: int


class Stage:
    """A runner over one view, recording what it handled."""

    def __init__(self, view: StageView, tp: TopicPartition, paused: bool = False) -> None:
        self.handled: list[int] = []
        self.runner: StageRunner[int] = StageRunner(
            RunnerSettings(name=tp.topic, topics=(tp.topic,), max_in_flight=4),
            view,
            Publisher(
                FakeProducer,
                service="test",
                dead_letter_topic="cofi.failed",
                producer=FakeProducer(),
            ),
            Work(decode=int, handle=self.handle, paused=lambda: paused),
            read_committed=view.read_committed,
        )

    async def handle(self, n: int) -> Sequence[Output]:
        self.handled.append(n)
        return [Output("cofi.out", b"k", Number(n=n))]


def shared_over(
    log: Mapping[TopicPartition, Sequence[bytes]],
    group: FakeGroup,
    views: int = 2,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[SharedConsumer, FakeConsumer]:
    consumer = FakeConsumer(log, group)
    shared = SharedConsumer(consumer, views, read_committed=group.read_committed, clock=clock)
    return shared, consumer


async def run_until(stages: list[Stage], done: Callable[[], bool]) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.runner.run(stop)) for s in stages]
    try:
        await wait_until(done, timeout_s=5)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def committed_position(group: FakeGroup, tp: TopicPartition) -> int:
    return group.commits[tp].offset if tp in group.commits else 0


async def test_each_stage_handles_its_own_records_and_the_one_group_commits_them_all() -> None:
    group = FakeGroup()
    log = {DENOISE: [b"1", b"2", b"3"], STT: [b"10", b"20"]}
    shared, consumer = shared_over(log, group)
    denoise, stt = Stage(shared.view("denoise"), DENOISE), Stage(shared.view("stt"), STT)
    await run_until(
        [denoise, stt],
        lambda: committed_position(group, DENOISE) == 3 and committed_position(group, STT) == 2,
    )
    assert sorted(denoise.handled) == [1, 2, 3]
    assert sorted(stt.handled) == [10, 20]
    assert consumer.starts == 1 and consumer.stopped  # started once, stopped after the last


async def test_a_paused_stage_does_not_hold_back_the_other() -> None:
    group = FakeGroup()
    shared, consumer = shared_over({DENOISE: [b"1", b"2"], STT: [b"10", b"20"]}, group)
    denoise = Stage(shared.view("denoise"), DENOISE, paused=True)
    stt = Stage(shared.view("stt"), STT)
    await run_until([denoise, stt], lambda: committed_position(group, STT) == 2)
    assert denoise.handled == [] and sorted(stt.handled) == [10, 20]
    assert DENOISE in consumer.paused_tps and STT not in consumer.paused_tps


async def test_a_partition_the_group_never_committed_resumes_from_the_stages_earlier_group() -> (
    None
):
    group, earlier = FakeGroup(), FakeGroup()
    # The stage's own group had finished 0 and 1, and 3 above its mark.
    earlier.commits[DENOISE] = OffsetAndMetadata(2, "")
    log: dict[TopicPartition, Sequence[bytes]] = {DENOISE: [b"0", b"1", b"2", b"3"], STT: [b"9"]}
    shared, _ = shared_over(log, group)
    denoise = Stage(shared.view("denoise", earlier_group=earlier.read_committed), DENOISE)
    stt = Stage(shared.view("stt"), STT)
    await run_until(
        [denoise, stt],
        lambda: committed_position(group, DENOISE) == 4 and committed_position(group, STT) == 1,
    )
    assert sorted(denoise.handled) == [2, 3]  # neither replayed nor skipped
    assert stt.handled == [9]


async def test_the_earlier_group_is_not_read_once_the_group_has_a_commit() -> None:
    group, earlier = FakeGroup(), FakeGroup()
    group.commits[DENOISE] = OffsetAndMetadata(1, "")
    earlier.commits[DENOISE] = OffsetAndMetadata(3, "")  # stale: the host's group moved on
    shared, _ = shared_over({DENOISE: [b"0"]}, group, views=1)
    view = shared.view("denoise", earlier_group=earlier.read_committed)
    assert (await view.read_committed([DENOISE]))[DENOISE].offset == 1


class Recording(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.revoked: list[set[TopicPartition]] = []
        self.assigned: list[set[TopicPartition]] = []

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.revoked.append(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned.append(assigned)


async def test_a_rebalance_hands_each_view_its_own_partitions() -> None:
    shared, consumer = shared_over({DENOISE: [], STT: []}, FakeGroup())
    denoise, stt = shared.view("denoise"), shared.view("stt")
    on_denoise, on_stt = Recording(), Recording()
    denoise.subscribe([DENOISE.topic], listener=on_denoise)
    stt.subscribe([STT.topic], listener=on_stt)
    await asyncio.gather(denoise.start(), stt.start())
    assert consumer.listener is not None
    await consumer.listener.on_partitions_revoked({DENOISE, STT})
    await consumer.listener.on_partitions_assigned({STT})
    assert on_denoise.revoked == [{DENOISE}] and on_stt.revoked == [{STT}]
    assert on_denoise.assigned == [set()] and on_stt.assigned == [{STT}]
    assert denoise.assignment() == {DENOISE} and stt.assignment() == {STT}


async def test_a_view_commits_and_pauses_only_its_own_partitions() -> None:
    group = FakeGroup()
    shared, consumer = shared_over({DENOISE: [b"1"], STT: [b"2"]}, group)
    denoise = shared.view("denoise")
    denoise.subscribe([DENOISE.topic], listener=Recording())
    denoise.pause(DENOISE, STT)
    assert consumer.paused_tps == {DENOISE}
    await denoise.commit({DENOISE: OffsetAndMetadata(1, ""), STT: OffsetAndMetadata(1, "")})
    assert set(group.commits) == {DENOISE}
    with pytest.raises(ValueError, match="named offsets only"):
        await denoise.commit()


class Assignment:
    tps = frozenset({DENOISE, STT})


def test_the_shared_fetch_waits_as_short_as_its_most_pressed_stage_asks() -> None:
    shared, consumer = shared_over({DENOISE: [], STT: []}, FakeGroup())
    consumer._fetcher = FakeFetcher(100)  # type: ignore[attr-defined]
    now = [0.0]
    idle = IdlePoll(shared.view("denoise"), lambda: now[0], idle_ms=2000, after_s=2.0)
    busy = IdlePoll(shared.view("stt"), lambda: now[0], idle_ms=2000, after_s=2.0)
    now[0] = 3.0
    idle.polled(busy=False)
    busy.polled(busy=True, behind=True)
    assert consumer._fetcher._fetch_max_wait_ms == 100  # type: ignore[attr-defined]
    busy.polled(busy=False)
    now[0] = 6.0
    busy.polled(busy=False)  # both idle now: the long wait
    assert consumer._fetcher._fetch_max_wait_ms == 2000  # type: ignore[attr-defined]


def test_a_stage_whose_records_wait_untaken_does_not_shorten_the_others_fetch() -> None:
    """denoise is behind with its slots and look-ahead full: its fetched records wait in the
    fetcher, out of the fetch, and stt's caught-up poll keeps its own wait."""
    now = [0.0]
    shared, consumer = shared_over({DENOISE: [], STT: []}, FakeGroup(), clock=lambda: now[0])
    fetcher = FakeFetcher(100)
    consumer._fetcher = fetcher  # type: ignore[attr-defined]
    views = shared.view("denoise"), shared.view("stt")
    for view, tp in zip(views, (DENOISE, STT), strict=True):
        view.subscribe([tp.topic], listener=Recording())
    denoise, stt = (IdlePoll(v, lambda: now[0], idle_ms=2000, after_s=2.0) for v in views)
    denoise.polled(busy=True, behind=True)
    stt.polled(busy=True)  # caught up: 500 ms
    fetcher._get_actions_per_node(Assignment())  # denoise in the fetch: its short wait
    fetcher._records[DENOISE] = object()  # delivered: short, so it is asked again soon
    fetcher._get_actions_per_node(Assignment())
    now[0] = 1.0  # ... and still untaken a second later: out of the fetch
    fetcher._get_actions_per_node(Assignment())
    assert fetcher.built_with == [100, 100, 500]
