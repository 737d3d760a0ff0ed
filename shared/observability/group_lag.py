"""The stages' consumer lag as the broker sees it: committed offsets against end offsets.

Each consumer reports its own lag (`cofi_consumer_lag`), so when every consumer of a group is
dead its series vanish and nothing pages on the work piling up. The tracker (a service of its
own, watched by its `up` alert) therefore also exports every stage group's lag from what the
group last committed (`cofi_group_lag`) and the committed offsets' sum
(`cofi_group_committed_offset`): records waiting while the committed sum stands still is a
stuck or dead group (alert `CofiConsumerGroupStuck`).
"""

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger(__name__)

GroupTopic = tuple[str, str]


class Admin(Protocol):
    async def list_consumer_group_offsets(
        self, group_id: str
    ) -> dict[TopicPartition, OffsetAndMetadata]: ...


class EndOffsets(Protocol):
    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...


def group_lag(
    committed: Mapping[str, Mapping[TopicPartition, int]],
    ends: Mapping[TopicPartition, int],
    inputs: Mapping[str, list[str]],
) -> tuple[dict[GroupTopic, int], dict[GroupTopic, int]]:
    """Per (group, input topic): the records past the group's committed offsets, and the
    committed offsets' sum. Partitions the group never committed on are left out (a new
    group, or one whose commits expired), as are topics that are not the group's input."""
    lag: dict[GroupTopic, int] = {}
    total: dict[GroupTopic, int] = {}
    for group, offsets in committed.items():
        for tp, offset in offsets.items():
            if tp.topic not in inputs.get(group, ()) or offset < 0:
                continue
            key = (group, tp.topic)
            lag[key] = lag.get(key, 0) + max(0, ends.get(tp, offset) - offset)
            total[key] = total.get(key, 0) + offset
    return lag, total


class GroupLagGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "cofi_group_lag",
            "Records in a stage group's input topic past the offsets the group committed, "
            "read from the broker (also while none of its consumers runs)",
            ["group", "topic"],
            registry=registry,
        )
        self.committed = Gauge(
            "cofi_group_committed_offset",
            "Sum of the offsets a stage group committed on its input topic's partitions",
            ["group", "topic"],
            registry=registry,
        )

    def show(self, lag: Mapping[GroupTopic, int], committed: Mapping[GroupTopic, int]) -> None:
        for (group, topic), value in lag.items():
            self.lag.labels(group, topic).set(value)
        for (group, topic), value in committed.items():
            self.committed.labels(group, topic).set(value)


def group_lag_probe(
    admin: Admin,
    ends: EndOffsets,
    inputs: Mapping[str, list[str]],
    gauges: GroupLagGauges,
    ready: Callable[[], bool] = lambda: True,
) -> Callable[[], Awaitable[None]]:
    """A refresh (Observability.refresh) that reads every group's committed offsets and the
    end offsets of those partitions, and sets the gauges; nothing until `ready` (the end
    offsets come from the tracker's consumer, which must have joined)."""

    async def refresh() -> None:
        if not ready():
            return
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in inputs:
            offsets = await admin.list_consumer_group_offsets(group)
            committed[group] = {tp: meta.offset for tp, meta in offsets.items()}
        partitions = sorted({tp for offsets in committed.values() for tp in offsets})
        end = await ends.end_offsets(partitions) if partitions else {}
        gauges.show(*group_lag(committed, end, inputs))

    return refresh


class StartedOnDemand:
    """An admin client started by its first call, so that a broker not yet reachable delays
    the export (the refresh logs and retries) rather than the tracker's start."""

    def __init__(self, admin: AIOKafkaAdminClient) -> None:
        self.admin = admin
        self.started = False

    async def list_consumer_group_offsets(
        self, group_id: str
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        if not self.started:
            await self.admin.start()
            self.started = True
        offsets: dict[
            TopicPartition, OffsetAndMetadata
        ] = await self.admin.list_consumer_group_offsets(group_id)
        return offsets

    async def close(self) -> None:
        if self.started:
            await self.admin.close()
