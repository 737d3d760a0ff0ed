"""The small slices of the Kafka clients that the runtime's parts use.

`aiokafka`'s clients satisfy them; so do the in-memory fakes of the unit tests
(`tests/unit/fake_kafka.py`), which is what lets the publisher, the committer and the intake
be tested without a broker.
"""

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

from aiokafka import ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class Producer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Awaitable[Any]:
        """Queue a record; the returned awaitable is its delivery (the broker's ack)."""
        ...


class Consumer(Protocol):
    def subscribe(self, topics: Sequence[str], *, listener: ConsumerRebalanceListener) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Record]]: ...

    def assignment(self) -> set[TopicPartition]: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    def highwater(self, partition: TopicPartition) -> int | None:
        """The partition's end offset, as of its last fetch (None before one)."""
        ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    async def commit(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata] | None = None
    ) -> None: ...
