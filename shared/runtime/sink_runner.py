"""Apply each poll's records to a sink in one go, then commit the offsets.

The tracker's loop: fetch a batch, apply it (one database transaction), and only after the
sink committed, commit the offsets. A failing sink is retried with backoff, never skipped,
so an outage of the database pauses the tracker instead of losing events.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from shared.kafka import start_when_reachable
from shared.keep_trying import Backoff, keep_trying
from shared.logging import fields

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Sink = Callable[[Sequence[Record]], Awaitable[None]]
# Called between the sink's commit and the offset commit; crash tests use it to die there.
AfterApplyHook = Callable[[Sequence[Record]], Awaitable[None]]


class SinkRunner:
    def __init__(
        self,
        *,
        name: str,
        consumer: AIOKafkaConsumer,
        topics: Sequence[str],
        apply: Sink,
        max_batch: int = 2000,
        retry_max_delay_s: float = 10.0,
        after_apply: AfterApplyHook | None = None,
    ) -> None:
        self.name = name
        self.consumer = consumer
        self.topics = list(topics)
        self.apply = apply
        self.max_batch = max_batch
        self.retry_max_delay_s = retry_max_delay_s
        self.after_apply = after_apply
        self.ready = False

    async def run(self, stop: asyncio.Event) -> None:
        if not await start_when_reachable(self.consumer, f"{self.name} consumer", stop):
            return
        # A topic list, not a pattern: with a pattern the client fetches and keeps the metadata
        # of every topic on the cluster, however many other pipelines put there. Subscribed
        # after the start, which would wait for every topic and fail after 40 s if one is
        # missing: a topic created later is read from its beginning once the metadata shows it.
        self.consumer.subscribe(topics=self.topics)
        try:
            while not stop.is_set():
                batch = await self.consumer.getmany(timeout_ms=200, max_records=self.max_batch)
                records = [r for rs in batch.values() for r in rs]
                if not records:
                    self.ready = True
                    continue
                if not await self._apply_until_done(records, stop):
                    return  # stopping while the sink is down: offsets stay uncommitted
                if self.after_apply is not None:
                    await self.after_apply(records)
                await self._commit(batch)
        finally:
            await self.consumer.stop()

    async def _apply_until_done(self, records: Sequence[Record], stop: asyncio.Event) -> bool:
        """False if stopping while the sink is still down."""

        def not_ready(_: BaseException) -> None:
            self.ready = False

        return await keep_trying(
            lambda: self.apply(records),
            retry_on=Exception,
            what=f"sink failed on {len(records)} records",
            backoff=Backoff(first_delay_s=0.5, max_delay_s=self.retry_max_delay_s),
            stop=stop,
            on_failure=not_ready,
            logger=log,
            extra=fields(service=self.name),
        )

    async def _commit(self, batch: dict[object, list[Record]]) -> None:
        positions = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        try:
            await self.consumer.commit(positions)
        except KafkaError as exc:
            # The records will be redelivered and re-applied; the sink is idempotent.
            log.warning("offset commit failed: %s", exc, extra=fields(service=self.name))
