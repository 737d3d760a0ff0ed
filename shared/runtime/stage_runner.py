"""Concurrent per-record processing with commits that never pass unfinished work.

A stage handles up to `max_in_flight` records at once. A record is finished only when the
broker acknowledged everything it produced (its next-stage event, or its dead letter); the
committed position of a partition is the lowest offset still in flight. A record keeps its
slot until a commit covers it (commits follow finishes at once), so at any moment at most
`max_in_flight` records are started and uncommitted: a kill -9 loses nothing and redoes at
most `max_in_flight` records. On a rebalance, records of the revoked partitions are let finish
and committed first, so scaling consumers up or down redoes nothing.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from shared.kafka import PublishRefused, refused_or_raise
from shared.keep_trying import Backoff, keep_trying
from shared.logging import fields
from shared.metrics import StageMetrics
from shared.output import Output
from shared.payload_limit import encode_bounded
from shared.runtime.dead_letters import dead_letter
from shared.runtime.offsets import PartitionProgress

log = logging.getLogger(__name__)
# Attempt payloads above this many bytes are trimmed (EVENT_PAYLOAD_MAX_BYTES).
DEFAULT_PAYLOAD_LIMIT = 16_384

M = TypeVar("M")
Record: TypeAlias = ConsumerRecord[bytes, bytes]


# A handler sees the decoded message only: offsets and raw bytes are the runner's business.
Handler = Callable[[M], Awaitable[Sequence[Output]]]


class StageRunner(Generic[M]):
    def __init__(
        self,
        *,
        name: str,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        topics: Sequence[str],
        decode: Callable[[bytes], M],
        handle: Handler[M],
        dead_letter_topic: str,
        max_in_flight: int,
        commit_interval_s: float = 0.2,
        drain_timeout_s: float = 30.0,
        metrics: StageMetrics | None = None,
        payload_limit: int = DEFAULT_PAYLOAD_LIMIT,
    ) -> None:
        self.name = name
        self.payload_limit = payload_limit
        self.consumer = consumer
        self.producer = producer
        self.topics = list(topics)
        self.decode = decode
        self.handle = handle
        self.dead_letter_topic = dead_letter_topic
        self.max_in_flight = max_in_flight
        self.commit_interval_s = commit_interval_s
        self.drain_timeout_s = drain_timeout_s
        self.progress: dict[TopicPartition, PartitionProgress] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.slot_freed = asyncio.Event()
        self.finished_count = 0
        self._commit_lock = asyncio.Lock()
        self._commit_wanted = asyncio.Event()
        self._tasks_by_tp: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self.metrics = metrics or StageMetrics()
        self.metrics.count_in_flight(lambda: len(self.tasks))

    async def run(self, stop: asyncio.Event) -> None:
        self.consumer.subscribe(self.topics, listener=_CommitOnRevoke(self.name, self.on_revoked))
        await self.consumer.start()
        committer = asyncio.create_task(self._commit_continuously(stop))
        try:
            await self._fetch_until(stop)
        finally:
            await self._drain()
            committer.cancel()
            await self._commit()
            await self.consumer.stop()

    async def _fetch_until(self, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self.slot_freed.clear()
                free = self.max_in_flight - self.held()
                if free <= 0:
                    freed = asyncio.create_task(self.slot_freed.wait())
                    await asyncio.wait({freed, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    freed.cancel()
                    continue
                batch = await self.consumer.getmany(timeout_ms=200, max_records=free)
                for tp, records in batch.items():
                    for record in records:
                        self._start(tp, record)
        finally:
            stopping.cancel()

    def _start(self, tp: TopicPartition, record: Record) -> None:
        progress = self.progress.setdefault(tp, PartitionProgress())
        progress.start(record.offset)
        task = asyncio.create_task(self._process(record, progress))
        self.tasks.add(task)
        self._tasks_by_tp.setdefault(tp, set()).add(task)
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        for running in self._tasks_by_tp.values():
            running.discard(task)
        # The slot itself is freed by the commit that covers the record (see _commit).
        self._commit_wanted.set()

    def held(self) -> int:
        """Records started and not yet covered by a commit: what a kill -9 now would redo."""
        return sum(p.held for p in self.progress.values())

    async def _process(self, record: Record, progress: PartitionProgress) -> None:
        outputs = await self._outputs_for(record)
        await self._publish(outputs, record)
        progress.finish(record.offset)
        self.finished_count += 1

    async def _outputs_for(self, record: Record) -> Sequence[Output]:
        where = fields(
            service=self.name, topic=record.topic, partition=record.partition, offset=record.offset
        )
        try:
            message = self.decode(record.value or b"")
        except Exception as exc:  # any undecodable input is a poison message
            log.warning("poison message sent to dead letters: %s", _short(exc), extra=where)
            self.metrics.dead_lettered("undecodable")
            return [self._dead_letter(record, f"undecodable: {_short(exc)}")]
        try:
            return await self.handle(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not crash-loop the consumer on one message
            # Decoded by now, so the line can name the file the SREs will look for.
            about = fields(
                batch=getattr(message, "batch_id", None),
                file=getattr(message, "file_name", None),
            )
            log.exception("handler failed; message sent to dead letters", extra=where | about)
            self.metrics.dead_lettered("handler_error")
            return [self._dead_letter(record, f"handler error: {type(exc).__name__}: {exc}")]

    def _dead_letter(self, record: Record, error: str) -> Output:
        letter = dead_letter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            consumer=self.name,
            error=error,
        )
        return Output(self.dead_letter_topic, record.key, letter)

    async def _publish(self, outputs: Sequence[Output], record: Record) -> None:
        """Send and wait for the broker's ack; keep trying through a broker outage.

        An output the broker will never take (too large, not authorized, an invalid topic)
        sends the input record to the dead letters with the reason, and the partition goes on.
        """
        try:
            await self._send(outputs, record)
        except PublishRefused as refused:
            if any(o.topic == self.dead_letter_topic for o in outputs):
                # The dead letter itself was refused: nothing left to try; the record stays
                # in its source topic (retention) and the log names it.
                log.error(
                    "dead letter refused by the broker; record skipped: %s",
                    refused,
                    extra=fields(service=self.name, topic=record.topic, offset=record.offset),
                )
                return
            self.metrics.dead_lettered("publish_refused")
            letter = self._dead_letter(record, f"publish refused: {refused}")
            await self._publish([letter], record)

    async def _send(self, outputs: Sequence[Output], record: Record) -> None:
        values = [encode_bounded(o.event, self.payload_limit) for o in outputs]

        async def send_all() -> None:
            with refused_or_raise():
                acks = [
                    await self.producer.send(o.topic, value=value, key=o.key)
                    for o, value in zip(outputs, values, strict=True)
                ]
                await asyncio.gather(*acks)

        await keep_trying(
            send_all,
            retry_on=KafkaError,
            what="publish failed",
            backoff=Backoff(first_delay_s=0.2, max_delay_s=5.0),
            logger=log,
            extra=fields(service=self.name, topic=record.topic, offset=record.offset),
        )

    async def _commit_continuously(self, stop: asyncio.Event) -> None:
        """Commit as soon as records finish (finishes during a commit share the next one), and
        at least every `commit_interval_s`, which retries a commit that failed."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commit_wanted.wait(), self.commit_interval_s)
            self._commit_wanted.clear()
            await self._commit()

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        async with self._commit_lock:
            positions = {
                tp: pos
                for tp, p in self.progress.items()
                if (only is None or tp in only) and (pos := p.committable()) is not None
            }
            if not positions:
                return
            try:
                await self.consumer.commit(positions)
            except KafkaError as exc:
                log.warning(
                    "offset commit failed (will retry): %s", exc, extra=fields(service=self.name)
                )
                return
            for tp, pos in positions.items():
                if (progress := self.progress.get(tp)) is not None:
                    progress.mark_committed(pos)
            self.slot_freed.set()

    async def _drain(self) -> None:
        if self.tasks:
            log.info(
                "draining %d in-flight records", len(self.tasks), extra=fields(service=self.name)
            )
            _, pending = await asyncio.wait(set(self.tasks), timeout=self.drain_timeout_s)
            for task in pending:
                task.cancel()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Let the records of the revoked partitions finish (bounded), then commit them, so
        # that their next owner does not redo them.
        running = {task for tp in revoked for task in self._tasks_by_tp.pop(tp, set())}
        if running:
            await asyncio.wait(running, timeout=self.drain_timeout_s)
        await self._commit(only=revoked)
        for tp in revoked:
            self.progress.pop(tp, None)
        self.slot_freed.set()  # what the revoked partitions held no longer counts


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self, name: str, on_revoked: Callable[[set[TopicPartition]], Awaitable[None]]
    ) -> None:
        self.name = name
        self.on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Says when a consumer works again after a rebalance (scaling, a restart).
        log.info("partitions assigned: %d", len(assigned), extra=fields(service=self.name))


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 300 else text[:300] + "..."
