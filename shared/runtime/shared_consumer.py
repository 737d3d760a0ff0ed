"""One Kafka consumer under several stage runners of a process: a view per stage.

Each consumer costs its process a fetch loop, heartbeats and metadata refreshes whether or
not records come: about half of a GPU-stage process's CPU at a GPU's real speed
(bench/FINDINGS.md, issue 21). With `GPU_STAGE_CONSUMERS=per_host` a GPU-stage process shares
one consumer among its host's stages instead of one each: those requests are shared, and a
fetch brings whichever stage's records arrived, while each record still starts on its own
stage's free slot and is acknowledged on its own.

Each runner sees its `StageView`, the runtime's `Consumer` port narrowed to its stage's
topics: `getmany` names the view's partitions (aiokafka returns only theirs and leaves the
others' records buffered for their own views), `assignment`, `pause` and `commit` touch only
them, and a rebalance hands each view's listener its own partitions. The consumer starts once
every view has subscribed and stops after the last view stopped, so a runner still draining
can commit. The group is the process's, not the stage's (`shared.groups`), so a view reads
its stage's old group's commit for a partition its own group never committed
(`read_committed`): moving to one consumer a host neither replays nor skips.
"""

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from shared.runtime.committed import committed_with_metadata
from shared.runtime.idle_poll import FetcherWait
from shared.runtime.intake import ReadCommitted
from shared.runtime.ports import Consumer, Record


class SharedConsumer:
    def __init__(
        self,
        consumer: Consumer,
        views: int,
        read_committed: ReadCommitted | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`views`: how many runners share it; it starts once that many subscribed.
        `read_committed` reads the group's commits with their metadata (by default from an
        aiokafka consumer's coordinator, `committed.committed_with_metadata`)."""
        self.consumer = consumer
        self.read_committed = read_committed or partial(
            committed_with_metadata, cast(AIOKafkaConsumer, consumer)
        )
        self.expected = views
        self.views: list[StageView] = []
        self.fetcher_wait = FetcherWait(consumer, clock)
        self._subscribed = asyncio.Event()
        self._started = False
        self._running = 0
        self._lock = asyncio.Lock()

    def view(self, name: str, earlier_group: ReadCommitted | None = None) -> "StageView":
        """The consumer as one runner sees it; `earlier_group` reads its stage's commits from
        before the consumer was shared."""
        if len(self.views) >= self.expected:
            raise ValueError(f"{name}: a consumer shared by {self.expected} has no more views")
        view = StageView(self, name, earlier_group)
        self.views.append(view)
        return view

    def subscribed(self) -> None:
        if all(v.stage_topics for v in self.views) and len(self.views) == self.expected:
            self._subscribed.set()

    async def start(self) -> None:
        await self._subscribed.wait()
        async with self._lock:
            if not self._started:
                topics = sorted({t for v in self.views for t in v.stage_topics})
                self.consumer.subscribe(topics, listener=_EachViewItsOwn(self.views))
                await self.consumer.start()
                self._started = True
            self._running += 1

    async def stop(self) -> None:
        async with self._lock:
            self._running -= 1
            if self._running <= 0 and self._started:
                await self.consumer.stop()
                self._started = False


class StageView:
    """The `Consumer` port over one stage's topics of a `SharedConsumer`."""

    def __init__(
        self, shared: SharedConsumer, name: str, earlier_group: ReadCommitted | None
    ) -> None:
        self.shared = shared
        self.name = name
        self.earlier_group = earlier_group
        self.stage_topics: frozenset[str] = frozenset()
        self.listener: ConsumerRebalanceListener | None = None
        # The idle poll's say on the shared fetch (`idle_poll.IdlePoll` finds it here).
        self.fetcher_wait = shared.fetcher_wait

    @property
    def consumer(self) -> Consumer:
        return self.shared.consumer

    def owns(self, tp: TopicPartition) -> bool:
        return tp.topic in self.stage_topics

    def subscribe(self, topics: Sequence[str], *, listener: ConsumerRebalanceListener) -> None:
        self.stage_topics = frozenset(topics)
        self.listener = listener
        self.shared.subscribed()

    async def start(self) -> None:
        await self.shared.start()

    async def stop(self) -> None:
        await self.shared.stop()

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Record]]:
        # Never an empty list: aiokafka would read that as every partition, the others' too.
        wanted = [tp for tp in partitions if self.owns(tp)] if partitions else self._assigned()
        if not wanted:
            if timeout_ms:
                await asyncio.sleep(timeout_ms / 1000)  # nothing held: as long a poll
            return {}
        found: dict[TopicPartition, list[Record]] = await self.consumer.getmany(
            *wanted, timeout_ms=timeout_ms, max_records=max_records
        )
        return found

    def _assigned(self) -> list[TopicPartition]:
        return [tp for tp in self.consumer.assignment() if self.owns(tp)]

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned())

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.consumer.seek(partition, offset)

    def highwater(self, partition: TopicPartition) -> int | None:
        highwater: int | None = self.consumer.highwater(partition)
        return highwater

    def pause(self, *partitions: TopicPartition) -> None:
        self.consumer.pause(*(tp for tp in partitions if self.owns(tp)))

    def resume(self, *partitions: TopicPartition) -> None:
        self.consumer.resume(*(tp for tp in partitions if self.owns(tp)))

    async def commit(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata] | None = None
    ) -> None:
        if offsets is None:  # the consumer's own positions would commit the others' too
            raise ValueError(f"{self.name}: a shared consumer commits named offsets only")
        await self.consumer.commit({tp: om for tp, om in offsets.items() if self.owns(tp)})

    async def read_committed(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """The group's commits; where it has none, the stage's earlier group's."""
        wanted = list(partitions)
        found = await self.shared.read_committed(wanted)
        missing = [tp for tp in wanted if tp not in found]
        if missing and self.earlier_group is not None:
            found.update(await self.earlier_group(missing))
        return found

    # What the observability reads of an aiokafka consumer
    # (`shared.observability.consumers.AiokafkaView`).
    @property
    def _aiokafka(self) -> AIOKafkaConsumer:
        return cast(AIOKafkaConsumer, self.consumer)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = await self._aiokafka.end_offsets(partitions)
        return offsets

    async def position(self, partition: TopicPartition) -> int:
        position: int = await self._aiokafka.position(partition)
        return position

    def subscription(self) -> set[str]:
        return set(self.stage_topics) if self._aiokafka.subscription() else set()

    async def topics(self) -> Any:
        return await self._aiokafka.topics()


class _EachViewItsOwn(ConsumerRebalanceListener):  # type: ignore[misc]
    """The shared consumer's rebalance listener: each view's listener gets its partitions,
    all at once (each commits its own before the group moves on)."""

    def __init__(self, views: list[StageView]) -> None:
        self.views = views

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await asyncio.gather(
            *(
                v.listener.on_partitions_revoked({tp for tp in revoked if v.owns(tp)})
                for v in self.views
                if v.listener is not None
            )
        )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await asyncio.gather(
            *(
                v.listener.on_partitions_assigned({tp for tp in assigned if v.owns(tp)})
                for v in self.views
                if v.listener is not None
            )
        )
