"""Read a group's committed offsets together with their metadata.

aiokafka's public `AIOKafkaConsumer.committed(tp)` returns the offset alone and drops the
metadata string the commit carried, which the stages need (the finished offsets above the
low-water mark, `shared/runtime/offset_metadata.py`). Its group coordinator's
`fetch_committed_offsets` returns both, as `OffsetAndMetadata`, and retries retriable errors
as `committed()` does. It is private API (aiokafka 0.14, `consumer/group_coordinator.py`):
this module is its only user, so an upgrade that moves it breaks one place, and
`tests/integration/test_stage_runner.py` notices. Another group's commits (a stage's group
from before its consumer was shared) come through the admin API instead.
"""

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from shared.kafka import Kafka, make_admin


async def committed_with_metadata(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The group's last commit for each of `partitions` that has one (a started consumer)."""
    wanted = list(partitions)
    if not wanted:
        return {}
    coordinator = consumer._coordinator  # private: see the module's docstring
    if coordinator is None:
        raise RuntimeError("the consumer has no group coordinator: start it first")
    found: dict[TopicPartition, OffsetAndMetadata] = await coordinator.fetch_committed_offsets(
        wanted
    )
    return {tp: om for tp, om in found.items() if om.offset >= 0}


async def committed_in_group(
    kafka: Kafka, group: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, OffsetAndMetadata]:
    """Another group's last commit for each of `partitions` that has one, with its metadata
    (the admin API's offset fetch: no need to join the group)."""
    wanted = list(partitions)
    if not wanted:
        return {}
    admin = make_admin(kafka)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group, partitions=wanted)
    finally:
        await admin.close()
    return {tp: om for tp, om in found.items() if om.offset >= 0}
