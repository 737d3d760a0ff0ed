"""Rebuild the upload ledger of a partition from the uploads topic (the I/O half of
assignment.UploadLedger): read the partition from `start` (None: its first retained record)
up to `until`, placing every upload again without producing anything.
"""

import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.distributor.routing import Incoming
from shared.kafka import Kafka
from shared.kafka_connection import connection

log = logging.getLogger(__name__)


async def replay_partition(
    kafka: Kafka,
    topic: str,
    partition: int,
    start: int | None,
    until: int,
    observe: Callable[[Incoming], None],
    begin: Callable[[int], None],
) -> int:
    """Feed records [start, until) of topic/partition to `observe`; returns how many.

    `begin(offset)` is called first with the offset the replay starts from (the partition's
    first retained record when `start` is None), so the ledger starts empty there.
    """
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        **connection(kafka).client_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    count = 0
    try:
        consumer.assign([tp])
        if start is None:
            first = (await consumer.beginning_offsets([tp]))[tp]
            begin(first)
            consumer.seek(tp, first)
        else:
            consumer.seek(tp, start)
        while await consumer.position(tp) < until:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=2000)
            for record in batch.get(tp, []):
                if record.offset >= until:
                    break
                observe(Incoming(topic, partition, record.offset, record.key, record.value))
                count += 1
    finally:
        await consumer.stop()
    log.info(
        "upload ledger replayed",
        extra={"topic": topic, "partition": partition, "records": count, "until": until},
    )
    return count
