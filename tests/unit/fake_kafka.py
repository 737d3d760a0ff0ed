"""In-memory stand-ins for the Kafka clients, implementing `shared.runtime.ports`.

`FakeProducer` acknowledges what it is sent, or fails as told (an error raised by `send`
itself, or by the delivery). `FakeConsumer` holds its partitions' records, is assigned all
of them, and keeps its group's commits (offset and metadata) in a `FakeGroup`, which a second
consumer of the same group reads from.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from shared.runtime.ports import Record


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None


class FakeProducer:
    """Acknowledges every send, except the failures queued in `fail_delivery`/`fail_send`
    (one per send, in order), every one while `broken` is set, and values over
    `max_value_bytes` (refused as the broker refuses them)."""

    def __init__(self, name: str = "p", max_value_bytes: int | None = None) -> None:
        self.name = name
        self.max_value_bytes = max_value_bytes
        self.sent: list[Sent] = []
        self.fail_send: deque[BaseException] = deque()
        self.fail_delivery: deque[BaseException] = deque()
        self.broken: BaseException | None = None
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Awaitable[Any]:
        if self.fail_send:
            raise self.fail_send.popleft()
        if self.max_value_bytes is not None and len(value or b"") > self.max_value_bytes:
            raise MessageSizeTooLargeError(f"{len(value or b'')} bytes to {topic}")
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failure = self.broken or (self.fail_delivery.popleft() if self.fail_delivery else None)
        if failure is not None:
            delivery.set_exception(failure)
        else:
            self.sent.append(Sent(topic, key, value))
            delivery.set_result(None)
        return delivery


@dataclass
class FakeGroup:
    commits: dict[TopicPartition, OffsetAndMetadata] = field(default_factory=dict)
    commit_calls: int = 0

    async def read_committed(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        return {tp: self.commits[tp] for tp in partitions if tp in self.commits}


def record(topic: str, partition: int, offset: int, value: bytes, key: bytes = b"k") -> Record:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=(),
    )


class FakeConsumer:
    """Every partition of `log` assigned; fetches from each partition's position on."""

    def __init__(self, log: Mapping[TopicPartition, Sequence[bytes]], group: FakeGroup) -> None:
        self.log = {tp: list(values) for tp, values in log.items()}
        self.group = group
        self.positions: dict[TopicPartition, int] = {}
        self.paused_tps: set[TopicPartition] = set()
        self.listener: ConsumerRebalanceListener | None = None
        self.started = self.stopped = False
        self.starts = 0

    def append(self, tp: TopicPartition, value: bytes) -> None:
        self.log.setdefault(tp, []).append(value)

    def subscribe(self, topics: Sequence[str], *, listener: ConsumerRebalanceListener) -> None:
        self.listener = listener

    async def start(self) -> None:
        self.started = True
        self.starts += 1
        for tp in self.log:
            committed = self.group.commits.get(tp)
            self.positions[tp] = committed.offset if committed else 0

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Record]]:
        room = max_records if max_records is not None else 1 << 30
        batch: dict[TopicPartition, list[Record]] = {}
        for tp, values in self.log.items():
            if tp in self.paused_tps or room <= 0 or (partitions and tp not in partitions):
                continue
            start = self.positions[tp]
            taken = values[start : start + room]
            if taken:
                batch[tp] = [
                    record(tp.topic, tp.partition, start + i, v) for i, v in enumerate(taken)
                ]
                self.positions[tp] = start + len(taken)
                room -= len(taken)
        if not batch:
            await asyncio.sleep(min(timeout_ms, 10) / 1000)  # a long poll, shortened
        return batch

    def assignment(self) -> set[TopicPartition]:
        return set(self.log)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self.log[partition]) if partition in self.log else None

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused_tps.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused_tps.difference_update(partitions)

    async def commit(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata] | None = None
    ) -> None:
        self.group.commit_calls += 1
        self.group.commits.update(offsets or {})


class FakeFetcher:
    """The attributes of aiokafka's fetcher that `shared.runtime.idle_poll` sets and wraps:
    its wait and wake-up, its untaken records, and the wait each fetch was built with."""

    def __init__(self, wait_ms: int) -> None:
        self._fetch_max_wait_ms = wait_ms
        self._fetcher_timeout = 0.2
        self._records: dict[TopicPartition, object] = {}
        self.built_with: list[int] = []

    def _get_actions_per_node(self, assignment: object) -> None:
        self.built_with.append(self._fetch_max_wait_ms)
