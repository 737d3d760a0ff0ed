"""A stage consumer's intake: fetch, admit, queue for a slot in start order, and pause.

Records are fetched up to the free slots plus `lookahead`; they wait decoded, with no slot
and no call made, and a freed slot starts the one of highest priority first
(`start_order.StartQueue`). A newly assigned partition resumes from its last commit: the
offsets its metadata names as finished are skipped. Two pauses: a partition whose next record
the commit metadata could not hold waits alone until its low-water mark moves; and while
`should_pause()` says so (the stage's dependency is down) every partition is paused and
polled, so the group keeps this consumer.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from shared.logging import fields
from shared.runtime.committer import Committer
from shared.runtime.idle_poll import IdlePoll, Runway
from shared.runtime.offsets import Admit, PartitionProgress
from shared.runtime.ports import Consumer, Record
from shared.runtime.start_order import StartQueue

log = logging.getLogger(__name__)

M = TypeVar("M")
ReadCommitted = Callable[
    [Iterable[TopicPartition]], Awaitable[dict[TopicPartition, OffsetAndMetadata]]
]


@dataclass(frozen=True)
class Undecodable:
    error: Exception


@dataclass(frozen=True)
class Fetched(Generic[M]):
    """An admitted record waiting for a slot, decoded once."""

    tp: TopicPartition
    record: Record
    progress: PartitionProgress
    message: "M | Undecodable"


@dataclass(frozen=True)
class IntakeRules(Generic[M]):
    """How records are decoded, ranked and held back."""

    decode: Callable[[bytes], M]
    max_in_flight: int
    lookahead: int = 0
    offset_metadata_max_bytes: int = 4096
    priority: Callable[[M], float] | None = None
    should_pause: Callable[[], bool] | None = None
    # With every slot held and room to fetch ahead, look for records again this often.
    recheck_s: float = 0.2
    # The broker's fetch wait once idle (`idle_poll`); 0 keeps the consumer's own.
    idle_fetch_wait_ms: int = 0
    # ... and once caught up (`idle_poll`).
    caught_up_fetch_wait_ms: int = 500


class Intake(Generic[M]):
    def __init__(
        self,
        name: str,
        consumer: Consumer,
        committer: Committer,
        rules: IntakeRules[M],
        read_committed: ReadCommitted,
    ) -> None:
        self.name = name
        self.consumer = consumer
        self.committer = committer
        self.rules = rules
        self.read_committed = read_committed
        # A waiting record goes next once 4 look-aheads of later arrivals overtook it.
        self.waiting: StartQueue[Fetched[M]] = StartQueue(patience=4 * max(rules.lookahead, 1))
        self.paused: set[TopicPartition] = set()  # at the metadata bound
        self.skipped_count = 0  # records a predecessor had finished (the commit's metadata)
        self.revocations = 0
        self._partitions_paused = False
        self.idle_poll = IdlePoll(
            consumer,
            time.monotonic,
            idle_ms=rules.idle_fetch_wait_ms,
            caught_up_ms=rules.caught_up_fetch_wait_ms,
        )
        self.runway = Runway(time.monotonic)

    @property
    def progress(self) -> dict[TopicPartition, PartitionProgress]:
        return self.committer.progress

    async def run(
        self,
        stop: asyncio.Event,
        start: Callable[[Fetched[M]], None],
        held: Callable[[], int],
    ) -> None:
        """Fetch and start records (`start`) while fewer than `max_in_flight` are `held`."""
        rules, slot_freed = self.rules, self.committer.slot_freed
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if self._pause_if_asked():
                    await self._poll_paused()
                    continue
                slot_freed.clear()
                self._pause_at_bound()
                self._start_waiting(start, held)
                free = rules.max_in_flight - held()
                room = free + rules.lookahead - len(self.waiting)
                if room > 0:
                    # With a slot free, wait a moment for records; with none, only top up the
                    # look-ahead from what the fetcher already holds.
                    timeout_ms = self.idle_poll.getmany_timeout_ms(200) if free > 0 else 0
                    batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=room)
                    if batch:
                        await self.admit(batch)
                    self.idle_poll.polled(
                        bool(batch) or held() > 0 or bool(self.waiting),
                        behind=self._behind(batch),
                        runway_s=self.runway.seconds(len(self.waiting)),
                    )
                    if batch or free > 0:
                        continue
                # Every slot busy: wait for one (and meanwhile top the look-ahead up again).
                freed = asyncio.create_task(slot_freed.wait())
                await asyncio.wait(
                    {freed, stopping},
                    timeout=self.idle_poll.recheck_s(rules.recheck_s) if room > 0 else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                freed.cancel()
        finally:
            stopping.cancel()

    def _behind(self, batch: dict[TopicPartition, list[Record]]) -> bool:
        """More records wait than the poll brought (on the broker, or fetched and not yet
        taken): a partition's high-water mark lies beyond its last record."""
        for tp, records in batch.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None and highwater > records[-1].offset + 1:
                return True
        return False

    def _start_waiting(self, start: Callable[[Fetched[M]], None], held: Callable[[], int]) -> None:
        """Start waiting records, highest priority first, while slots are free."""
        while self.waiting and held() < self.rules.max_in_flight:
            fetched = self.waiting.pop()
            if self.progress.get(fetched.tp) is fetched.progress:  # not revoked meanwhile
                self.runway.started()
                start(fetched)

    async def admit(self, batch: dict[TopicPartition, list[Record]]) -> None:
        """Queue the fetched records for a slot, skip those a predecessor finished, and fetch
        again later those beyond the metadata bound."""
        missing = [tp for tp in batch if tp not in self.progress]
        if missing:
            revocations = self.revocations
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
            if revocations != self.revocations:
                return  # a rebalance came meanwhile: the new assignment fetches from commits
        self.committer.touch()  # a gap in the offsets may move a low-water mark
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
                    self.committer.want()
                else:
                    self._fetch_again(tp, record.offset)
                    break

    async def _resume(self, partitions: list[TopicPartition]) -> None:
        """Progress of newly assigned partitions, from their last commit and its metadata."""
        found = await self.read_committed(partitions)
        for tp in partitions:
            last = found.get(tp)
            progress = PartitionProgress.resume(
                last.offset if last else None,
                last.metadata if last else "",
                self.rules.offset_metadata_max_bytes,
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
        should_pause = self.rules.should_pause
        if should_pause is not None and should_pause():
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
            await self.admit(batch)

    def _enqueue(self, tp: TopicPartition, record: Record, progress: PartitionProgress) -> None:
        message: M | Undecodable
        try:
            message = self.rules.decode(record.value or b"")
        except Exception as exc:  # any undecodable input is a poison message
            message = Undecodable(exc)
        # A poison message makes no model call: dead-letter it at once.
        rank = float("inf") if isinstance(message, Undecodable) else self._rank(message)
        self.waiting.push(tp, rank, Fetched(tp, record, progress, message))

    def _rank(self, message: M) -> float:
        if self.rules.priority is None:
            return 0.0
        try:
            return self.rules.priority(message)
        except Exception:  # a message the priority cannot read still runs, in arrival order
            log.exception("start priority failed", extra=fields(service=self.name))
            return 0.0

    def drop_waiting(self, revoked: set[TopicPartition]) -> None:
        """A revocation begins: what waits from those partitions is not started (their next
        owner fetches it)."""
        self.waiting.drop(revoked)

    def forget(self, revoked: set[TopicPartition]) -> None:
        """A revocation ended (committed): a fetch admitted meanwhile is dropped."""
        self.revocations += 1
        for tp in revoked:
            self.paused.discard(tp)  # a new assignment starts unpaused
