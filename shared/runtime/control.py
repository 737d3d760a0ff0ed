"""What operators said on the compacted control topic, read by every stage: which batches
they cancelled (`cofi cancel`) and which GPU hosts they drained (`cofi drain`).

Each process reads the whole topic (no consumer group: every instance needs every batch)
and keeps reading, so a cancellation or a drain reaches running stages within a poll. A
service starts consuming only once this reader has read the topic to the end it had when
it started (`caught_up`): after a restart, no cancelled batch is started again and no
drained host gets work while the old word is still unread.

Keys (compaction keeps the latest record per key): `batch:<id>` for a cancel, `host:<ip>`
for a drain (`cancel_key`, `drain_key`), so a batch named `host:x` and a drain of host `x`
never overwrite each other. Records are read by their value, so cancels written under the
older key (the bare batch id) still count.
"""

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from shared.events import HostDrained, control_event
from shared.kafka import Kafka, make_topic_reader, start_when_reachable
from shared.runtime.idle_poll import set_fetch_wait

log = logging.getLogger(__name__)


class ControlView:
    """The batches cancelled and the GPU hosts drained, as read so far from the control
    topic; both sets are updated in place, so a holder of either sees every later word."""

    def __init__(self, kafka: Kafka, topic: str, fetch_wait_ms: int = 5_000) -> None:
        self.kafka = kafka
        self.topic = topic
        self.fetch_wait_ms = fetch_wait_ms
        self.cancelled_batches: set[str] = set()
        # Hosts drained by `cofi drain` (the latest word per host: a drain can be undone).
        self.drained_hosts: set[str] = set()
        self._caught_up = asyncio.Event()

    async def caught_up(self, stop: asyncio.Event) -> bool:
        """Wait until the topic was read to the end it had when the reader started; False
        if `stop` came first."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self._caught_up, stop)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self._caught_up.is_set()

    def apply(self, raw: bytes | None) -> None:
        if raw is None:
            return  # a tombstone compacting the topic
        try:
            event = control_event.validate_json(raw)
        except ValidationError:
            log.warning("ignoring an unreadable control event on %s", self.topic)
            return
        if isinstance(event, HostDrained):
            if event.drained and event.host not in self.drained_hosts:
                log.warning("GPU host %s drained: %s", event.host, event.reason or "no reason")
                self.drained_hosts.add(event.host)
            elif not event.drained and event.host in self.drained_hosts:
                log.info("GPU host %s no longer drained", event.host)
                self.drained_hosts.discard(event.host)
            return
        if event.batch_id not in self.cancelled_batches:
            log.info("batch %s cancelled: %s", event.batch_id, event.reason or "no reason given")
        self.cancelled_batches.add(event.batch_id)

    async def run(self, stop: asyncio.Event) -> None:
        # Kafka's short wait until caught up: the end offsets it reads to know it is would
        # queue behind a long fetch on the reader's one connection to the broker.
        reader = make_topic_reader(self.kafka, self.topic)
        if not await start_when_reachable(reader, "control topic reader", stop):
            return
        ends: dict[TopicPartition, int] | None = None
        try:
            while not stop.is_set():
                batch = await reader.getmany(timeout_ms=1_000)
                for records in batch.values():
                    for record in records:
                        self.apply(record.value)
                if not self._caught_up.is_set():
                    ends = ends or await _ends(reader)
                    if ends is not None and await _reached(reader, ends):
                        log.info(
                            "control topic %s read to its end: consuming may start", self.topic
                        )
                        self._caught_up.set()
                        set_fetch_wait(reader, self.fetch_wait_ms)  # caught up: poll long
        finally:
            await reader.stop()


async def _ends(reader: AIOKafkaConsumer) -> dict[TopicPartition, int] | None:
    """The end offsets of the partitions the reader holds (None until it holds some)."""
    assigned = reader.assignment()
    return await reader.end_offsets(list(assigned)) if assigned else None


async def _reached(reader: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    assigned = reader.assignment()
    for partition, end in ends.items():
        if partition not in assigned or await reader.position(partition) < end:
            return False
    return True
