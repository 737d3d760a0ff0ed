"""Concurrent per-record processing with commits that never pass unfinished work.

A stage handles up to `max_in_flight` records at once. A record is finished only when the
broker acknowledged everything it produced (its next-stage event, or its dead letter). Each
commit of a partition is its low-water mark (the lowest offset not finished) with the finished
offsets above it in the commit's metadata (`offsets.PartitionProgress`); a partition taken
over (a restart, a rebalance) skips the offsets its last commit names as finished.

A record holds its slot from its start until a commit records it finished, which the next
commit does, whatever runs below it: a slow record holds only its own slot. So at any moment at
most `max_in_flight` records are started and not recorded, and a kill -9 redoes at most those.
A partition starts no record beyond what its metadata can hold (`offset_metadata.max_span`):
at that bound it is paused alone until its low-water mark moves. On a rebalance, records of the
revoked partitions are let finish and committed first, so scaling consumers redoes nothing.

A consumer may fetch up to `lookahead` records beyond its free slots. They wait decoded, with no
slot and no call made, and a freed slot starts the one of highest `priority` (a GPU stage: the
longest call) first (`start_order.StartQueue`).
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from shared.kafka import PublishRefused, refused_or_raise
from shared.keep_trying import Backoff, keep_trying
from shared.logging import fields
from shared.metrics import StageMetrics
from shared.output import Output
from shared.payload_limit import encode_bounded
from shared.runtime.committed import committed_with_metadata
from shared.runtime.dead_letters import dead_letter
from shared.runtime.offsets import Admit, Commit, PartitionProgress
from shared.runtime.start_order import StartQueue

log = logging.getLogger(__name__)
# Attempt payloads above this many bytes are trimmed (EVENT_PAYLOAD_MAX_BYTES).
DEFAULT_PAYLOAD_LIMIT = 16_384

M = TypeVar("M")
Record: TypeAlias = ConsumerRecord[bytes, bytes]


# A handler sees the decoded message only: offsets and raw bytes are the runner's business.
Handler = Callable[[M], Awaitable[Sequence[Output]]]


@dataclass(frozen=True)
class Undecodable:
    error: Exception


@dataclass(frozen=True)
class _Fetched(Generic[M]):
    """An admitted record waiting for a slot, decoded once."""

    tp: TopicPartition
    record: Record
    progress: PartitionProgress
    message: "M | Undecodable"


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
        offset_metadata_max_bytes: int = 4096,
        metrics: StageMetrics | None = None,
        payload_limit: int = DEFAULT_PAYLOAD_LIMIT,
        paused: Callable[[], bool] | None = None,
        priority: Callable[[M], float] | None = None,
        lookahead: int = 0,
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
        self.priority = priority
        self.lookahead = lookahead
        # A waiting record goes next once 4 look-aheads of later arrivals overtook it.
        self.waiting: StartQueue[_Fetched[M]] = StartQueue(patience=4 * max(lookahead, 1))
        self.commit_interval_s = commit_interval_s
        self.drain_timeout_s = drain_timeout_s
        # The broker's `offset.metadata.max.bytes`: the longest metadata a commit may carry.
        self.offset_metadata_max_bytes = offset_metadata_max_bytes
        self.progress: dict[TopicPartition, PartitionProgress] = {}
        self.paused: set[TopicPartition] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.slot_freed = asyncio.Event()
        self.finished_count = 0
        self.skipped_count = 0  # records a predecessor had finished (the commit's metadata)
        self._revocations = 0
        self._commit_lock = asyncio.Lock()
        self._commit_wanted = asyncio.Event()
        self._tasks_by_tp: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self.metrics = metrics or StageMetrics()
        self.metrics.count_in_flight(lambda: len(self.tasks))
        # While it says so (the stage's dependency is down: shared/breaker.py), take no new
        # records: the partitions are paused and polled, so the group keeps this consumer.
        self.should_pause = paused or (lambda: False)
        self._partitions_paused = False

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
                if self._pause_if_asked():
                    await self._poll_paused()
                    continue
                self.slot_freed.clear()
                self._pause_at_bound()
                self._start_waiting()
                free = self.max_in_flight - self.held()
                room = free + self.lookahead - len(self.waiting)
                if room > 0:
                    # With a slot free, wait a moment for records; with none, only top up the
                    # look-ahead from what the fetcher already holds.
                    timeout_ms = 200 if free > 0 else 0
                    batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=room)
                    if batch:
                        await self._admit(batch)
                    if batch or free > 0:
                        continue
                # Every slot busy: wait for one (and meanwhile top the look-ahead up again).
                freed = asyncio.create_task(self.slot_freed.wait())
                await asyncio.wait(
                    {freed, stopping},
                    timeout=self.commit_interval_s if room > 0 else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                freed.cancel()
        finally:
            stopping.cancel()

    def _start_waiting(self) -> None:
        """Start waiting records, highest priority first, while slots are free."""
        while self.waiting and self.held() < self.max_in_flight:
            fetched = self.waiting.pop()
            if self.progress.get(fetched.tp) is fetched.progress:  # not revoked meanwhile
                self._start(fetched)

    async def _admit(self, batch: dict[TopicPartition, list[Record]]) -> None:
        """Queue the fetched records for a slot, skip those a predecessor finished, and fetch
        again later those beyond the metadata bound."""
        missing = [tp for tp in batch if tp not in self.progress]
        if missing:
            revocations = self._revocations
            try:
                await self._resume(missing)
            except KafkaError as exc:
                log.warning(
                    "reading committed offsets failed (will fetch again): %s",
                    exc,
                    extra=fields(service=self.name),
                )
                for tp, records in batch.items():
                    self._fetch_again(tp, records[0].offset)
                return
            if revocations != self._revocations:
                return  # a rebalance came meanwhile: the new assignment fetches from commits
        for tp, records in batch.items():
            progress = self.progress.get(tp)
            if progress is None:
                continue
            for record in records:
                verdict = progress.admit(record.offset)
                if verdict is Admit.START:
                    self._enqueue(tp, record, progress)
                elif verdict is Admit.SKIP:
                    self.skipped_count += 1
                    self._commit_wanted.set()
                else:
                    self._fetch_again(tp, record.offset)
                    break

    async def _resume(self, partitions: list[TopicPartition]) -> None:
        """Progress of newly assigned partitions, from their last commit and its metadata."""
        found = await committed_with_metadata(self.consumer, partitions)
        for tp in partitions:
            last = found.get(tp)
            progress = PartitionProgress.resume(
                last.offset if last else None,
                last.metadata if last else "",
                self.offset_metadata_max_bytes,
            )
            self.progress[tp] = progress
            if progress.finished:
                log.info(
                    "resuming %s at %d; %d finished offsets above it will be skipped",
                    tp,
                    progress.position,
                    len(progress.finished),
                    extra=fields(service=self.name, topic=tp.topic, partition=tp.partition),
                )

    def _fetch_again(self, tp: TopicPartition, offset: int) -> None:
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, offset)

    def _pause_at_bound(self) -> None:
        """Pause the partitions whose next record the metadata could not hold; resume those
        whose low-water mark moved. The other partitions go on."""
        for tp, progress in self.progress.items():
            if progress.at_bound and tp not in self.paused:
                log.info(
                    "pausing %s: finished offsets above %s fill the commit metadata",
                    tp,
                    progress.position,
                    extra=fields(service=self.name, topic=tp.topic, partition=tp.partition),
                )
                self.consumer.pause(tp)
                self.paused.add(tp)
            elif not progress.at_bound and tp in self.paused:
                self.consumer.resume(tp)
                self.paused.discard(tp)

    def _pause_if_asked(self) -> bool:
        """Pause every held partition while `should_pause()` says so (again after a
        rebalance), resume them once it no longer does (those paused at the metadata bound
        stay paused); True while paused."""
        if self.should_pause():
            self.consumer.pause(*self.consumer.assignment())
            if not self._partitions_paused:
                log.info("paused: taking no new records", extra=fields(service=self.name))
            self._partitions_paused = True
            return True
        if self._partitions_paused:
            self.consumer.resume(
                *(tp for tp in self.consumer.assignment() if tp not in self.paused)
            )
            self._partitions_paused = False
            log.info("resumed: taking records again", extra=fields(service=self.name))
        return False

    async def _poll_paused(self) -> None:
        # Paused partitions return nothing; records fetched before the pause wait, holding no
        # slot, until the pause ends. Polling keeps the consumer in its group.
        batch = await self.consumer.getmany(timeout_ms=200, max_records=1)
        if batch:
            await self._admit(batch)

    def _enqueue(self, tp: TopicPartition, record: Record, progress: PartitionProgress) -> None:
        message: M | Undecodable
        try:
            message = self.decode(record.value or b"")
        except Exception as exc:  # any undecodable input is a poison message
            message = Undecodable(exc)
        # A poison message makes no model call: dead-letter it at once.
        rank = float("inf") if isinstance(message, Undecodable) else self._rank(message)
        self.waiting.push(tp, rank, _Fetched(tp, record, progress, message))

    def _rank(self, message: M) -> float:
        if self.priority is None:
            return 0.0
        try:
            return self.priority(message)
        except Exception:  # a message the priority cannot read still runs, in arrival order
            log.exception("start priority failed", extra=fields(service=self.name))
            return 0.0

    def _start(self, fetched: _Fetched[M]) -> None:
        task = asyncio.create_task(self._process(fetched))
        self.tasks.add(task)
        self._tasks_by_tp.setdefault(fetched.tp, set()).add(task)
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        for running in self._tasks_by_tp.values():
            running.discard(task)
        # The slot itself is freed by the commit that records the record finished (_commit).
        # With every slot held, a record may wait for one: commit now. Otherwise the next
        # periodic commit records this one with those finished meanwhile: a trickle of
        # records then costs a commit request per `max_in_flight` records or per
        # `commit_interval_s`, not one per record.
        if self.held() >= self.max_in_flight:
            self._commit_wanted.set()

    def held(self) -> int:
        """Records holding a slot: running, or finished and recorded by no commit yet. What a
        kill -9 now would make this consumer redo; never more than `max_in_flight`."""
        unrecorded = sum(len(p.unrecorded) for p in self.progress.values())
        return len(self.tasks) + unrecorded

    async def _process(self, fetched: _Fetched[M]) -> None:
        record = fetched.record
        outputs = await self._outputs_for(record, fetched.message)
        await self._publish(outputs, record)
        fetched.progress.finish(record.offset)
        self.finished_count += 1

    async def _outputs_for(self, record: Record, message: M | Undecodable) -> Sequence[Output]:
        where = fields(
            service=self.name, topic=record.topic, partition=record.partition, offset=record.offset
        )
        if isinstance(message, Undecodable):
            exc = message.error
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
        """Commit when asked (`_on_done`: every slot held; skipped records) and at least every
        `commit_interval_s`, which records the other finishes and retries a failed commit."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commit_wanted.wait(), self.commit_interval_s)
            self._commit_wanted.clear()
            await self._commit()

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        async with self._commit_lock:
            assigned = self.consumer.assignment()
            commits: dict[TopicPartition, tuple[PartitionProgress, Commit]] = {
                tp: (p, c)
                for tp, p in self.progress.items()
                if (only is None or tp in only) and tp in assigned and (c := p.commit())
            }
            if not commits:
                return
            try:
                await self.consumer.commit(
                    {
                        tp: OffsetAndMetadata(c.position, c.metadata)
                        for tp, (_, c) in commits.items()
                    }
                )
            except KafkaError as exc:
                log.warning(
                    "offset commit failed (will retry): %s", exc, extra=fields(service=self.name)
                )
                return
            for progress, commit in commits.values():
                progress.mark_committed(commit)
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
        self.waiting.drop(revoked)  # not started: their next owner fetches them
        running = {task for tp in revoked for task in self._tasks_by_tp.pop(tp, set())}
        if running:
            await asyncio.wait(running, timeout=self.drain_timeout_s)
        await self._commit(only=revoked)
        self._revocations += 1
        for tp in revoked:
            self.progress.pop(tp, None)
            self.paused.discard(tp)  # a new assignment starts unpaused
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
