"""Consumer lag per topic partition, and proof that the broker answers, refreshed periodically.

The probe asks the broker for the end offsets of the partitions a consumer holds (a real
round trip, so a successful refresh also proves the broker is reachable) and compares them
with the consumer's position. A consumer holding no partitions proves it with a metadata
call instead. aiokafka consumers (stages, tracker) and faust's consumer (distributor) are
read through the same small view.
"""

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer

from shared.metrics import LagMetrics

# (topic, partition): aiokafka's TopicPartition and faust's TP are both such named tuples.
Partition = tuple[str, int]
# A held partition's position is known at once, except just after assignment (while its
# committed offset is fetched); then its lag is left for a later refresh.
POSITION_TIMEOUT_S = 1.0


class NotConnected(Exception):
    """The consumer cannot show that the broker answers (not started, nothing to ask)."""


class ConsumerView(Protocol):
    def assignment(self) -> set[Any]: ...

    async def end_offsets(self, partitions: list[Any]) -> Mapping[Any, int]: ...

    async def position(self, partition: Any) -> int | None: ...

    async def ping(self) -> None:
        """A broker round trip for a consumer that holds no partitions."""


class AiokafkaView:
    def __init__(
        self, consumer: AIOKafkaConsumer, not_started: Callable[[Any], int] | None = None
    ) -> None:
        self.consumer = consumer
        # Records a stage fetched ahead and has not started (its look-ahead): still backlog.
        self.not_started = not_started or (lambda partition: 0)

    def assignment(self) -> set[Any]:
        return set(self.consumer.assignment())

    async def end_offsets(self, partitions: list[Any]) -> Mapping[Any, int]:
        offsets: Mapping[Any, int] = await self.consumer.end_offsets(partitions)
        return offsets

    async def position(self, partition: Any) -> int | None:
        """The fetch position, less the fetched records not started yet: lag counts them."""
        position: int = await self.consumer.position(partition)
        return position - self.not_started(partition)

    async def ping(self) -> None:
        # Before start() the client knows no broker and would only log errors.
        if not self.consumer.subscription():
            raise NotConnected("consumer not subscribed yet")
        await self.consumer.topics()


class FaustView:
    """faust's consumer runs aiokafka in a thread of its own; its delegates are thread-safe."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def assignment(self) -> set[Any]:
        return set(self.app.consumer.assignment())

    async def end_offsets(self, partitions: list[Any]) -> Mapping[Any, int]:
        offsets: Mapping[Any, int] = await self.app.consumer.highwaters(*partitions)
        return offsets

    async def position(self, partition: Any) -> int | None:
        position: int | None = await self.app.consumer.position(partition)
        return position

    async def ping(self) -> None:
        raise NotConnected("no partitions assigned yet")


def consumer_lag(end_offset: int | None, position: int | None) -> int | None:
    """Both offsets name the *next* record; unknown until the consumer has a position."""
    if end_offset is None or position is None:
        return None
    return max(0, end_offset - position)


class ConsumerProbe:
    def __init__(self, view: ConsumerView, lag: LagMetrics) -> None:
        self.view = view
        self.lag = lag
        self.reported: set[Partition] = set()

    async def refresh(self) -> None:
        """One round trip; records the lag of every held partition whose position is known."""
        held = self.view.assignment()
        if not held:
            await self.view.ping()
            self._report({})
            return
        ends = await self.view.end_offsets(sorted(held))
        partitions = list(held)
        positions = await asyncio.gather(*(self._position(p) for p in partitions))
        lags: dict[Partition, int] = {}
        for partition, position in zip(partitions, positions, strict=True):
            lag = consumer_lag(ends.get(partition), position)
            if lag is not None:
                lags[(partition[0], partition[1])] = lag
        self._report(lags)

    async def _position(self, partition: Any) -> int | None:
        try:
            return await asyncio.wait_for(self.view.position(partition), POSITION_TIMEOUT_S)
        except Exception:  # timed out, revoked meanwhile, not started
            return None

    def _report(self, lags: Mapping[Partition, int]) -> None:
        for topic, partition in self.reported - set(lags):
            self.lag.forget(topic, partition)
        for (topic, partition), lag in lags.items():
            self.lag.set(topic, partition, lag)
        self.reported = set(lags)
