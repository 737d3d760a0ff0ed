"""Concurrent per-record processing with commits that never pass unfinished work.

A stage handles up to `max_in_flight` records at once. A record is finished only when the
broker acknowledged everything it produced (its next-stage event, or its dead letter). Each
commit of a partition is its low-water mark (the lowest offset not finished) with the finished
offsets above it in the commit's metadata (`offsets.PartitionProgress`); a partition taken
over (a restart, a rebalance) skips the offsets its last commit names as finished.

A record holds its slot from its start until a commit records it finished, which the next
commit does, whatever runs below it: a slow record holds only its own slot. So at any moment at
most `max_in_flight` records are started and not recorded, and a kill -9 redoes at most those.
On a rebalance, records of the revoked partitions are let finish and committed first, so
scaling consumers redoes nothing.

The runner composes its parts: the `Intake` (fetch, admission, start order, pausing), the
`Publisher` (payload limit, retries, refusals, acks) and the `Committer` (low mark and
metadata, periodic and on revoke). It owns the records' tasks and the handler's errors.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar, cast

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from shared.logging import fields
from shared.metrics import StageMetrics
from shared.output import Output
from shared.runtime.committed import committed_with_metadata
from shared.runtime.committer import Committer
from shared.runtime.dead_letters import dead_letter_of
from shared.runtime.intake import Fetched, Intake, IntakeRules, ReadCommitted, Undecodable
from shared.runtime.ports import Consumer, Record
from shared.runtime.publisher import DEFAULT_PAYLOAD_LIMIT, Publisher
from shared.runtime.start_order import StartQueue

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_PAYLOAD_LIMIT", "Handler", "RunnerSettings", "StageRunner", "Work"]

M = TypeVar("M")

# A handler sees the decoded message only: offsets and raw bytes are the runner's business.
Handler = Callable[[M], Awaitable[Sequence[Output]]]


@dataclass(frozen=True)
class RunnerSettings:
    """What one stage consumer reads, how much it holds, and its timings."""

    name: str
    topics: tuple[str, ...]
    max_in_flight: int
    # Records fetched beyond the free slots, to start the highest priority first.
    lookahead: int = 0
    commit_interval_s: float = 0.2
    drain_timeout_s: float = 30.0
    # The broker's `offset.metadata.max.bytes`: the longest metadata a commit may carry.
    offset_metadata_max_bytes: int = 4096
    # The fetch wait once the consumer is idle (`idle_poll`); 0 keeps its own.
    idle_fetch_wait_ms: int = 0
    # ... and once caught up: records in hand, none waiting on the broker.
    caught_up_fetch_wait_ms: int = 500


@dataclass(frozen=True)
class Work(Generic[M]):
    """What the stage does with a record: decode it, rank it, handle it; and when to pause."""

    decode: Callable[[bytes], M]
    handle: Handler[M]
    # The start order among waiting records (a GPU stage: the longest call first).
    priority: Callable[[M], float] | None = None
    # While it says so (the stage's dependency is down: shared/breaker.py), take no new
    # records: the partitions are paused and polled, so the group keeps this consumer.
    paused: Callable[[], bool] | None = None


class StageRunner(Generic[M]):
    def __init__(
        self,
        settings: RunnerSettings,
        consumer: Consumer,
        publisher: Publisher,
        work: Work[M],
        metrics: StageMetrics | None = None,
        read_committed: ReadCommitted | None = None,
    ) -> None:
        """`read_committed` reads the group's commits with their metadata (by default from
        the consumer's coordinator, `committed.committed_with_metadata`)."""
        self.settings = settings
        self.name = settings.name
        self.consumer = consumer
        self.publisher = publisher
        self.work = work
        self.committer = Committer(settings.name, consumer, settings.commit_interval_s)
        rules = IntakeRules(
            decode=work.decode,
            max_in_flight=settings.max_in_flight,
            lookahead=settings.lookahead,
            offset_metadata_max_bytes=settings.offset_metadata_max_bytes,
            priority=work.priority,
            should_pause=work.paused,
            recheck_s=settings.commit_interval_s,
            idle_fetch_wait_ms=settings.idle_fetch_wait_ms,
            caught_up_fetch_wait_ms=settings.caught_up_fetch_wait_ms,
        )
        # The default reads the coordinator of an aiokafka consumer (private API).
        read = read_committed or partial(committed_with_metadata, cast(AIOKafkaConsumer, consumer))
        self.intake: Intake[M] = Intake(settings.name, consumer, self.committer, rules, read)
        self.tasks: set[asyncio.Task[None]] = set()
        self._tasks_by_tp: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self.finished_count = 0
        self.metrics = metrics or StageMetrics()
        self.metrics.count_in_flight(lambda: len(self.tasks))

    # What the tests and the observability read.
    @property
    def waiting(self) -> StartQueue[Fetched[M]]:
        return self.intake.waiting

    @property
    def paused(self) -> set[TopicPartition]:
        return self.intake.paused

    @property
    def skipped_count(self) -> int:
        return self.intake.skipped_count

    def held(self) -> int:
        """Records holding a slot: running, or finished and recorded by no commit yet. What a
        kill -9 now would make this consumer redo; never more than `max_in_flight`."""
        return len(self.tasks) + self.committer.unrecorded()

    async def run(self, stop: asyncio.Event) -> None:
        self.consumer.subscribe(
            list(self.settings.topics), listener=_CommitOnRevoke(self.name, self.on_revoked)
        )
        await self.consumer.start()
        committer = asyncio.create_task(self.committer.run(stop))
        try:
            await self.intake.run(stop, self._start, self.held)
        finally:
            await self._drain()
            committer.cancel()
            await self.committer.commit()
            await self.consumer.stop()

    def _start(self, fetched: Fetched[M]) -> None:
        task = asyncio.create_task(self._process(fetched))
        self.tasks.add(task)
        self._tasks_by_tp.setdefault(fetched.tp, set()).add(task)
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        for running in self._tasks_by_tp.values():
            running.discard(task)
        # The slot itself is freed by the commit that records the record finished. With
        # every slot held, a record may wait for one: commit now. Otherwise the next
        # periodic commit records this one with those finished meanwhile: a trickle of
        # records then costs a commit request per `max_in_flight` records or per
        # `commit_interval_s`, not one per record.
        if self.held() >= self.settings.max_in_flight:
            self.committer.want()

    async def _process(self, fetched: Fetched[M]) -> None:
        record = fetched.record
        outputs = await self._outputs_for(record, fetched.message)
        if not await self.publisher.publish(outputs, record, self.name):
            self.metrics.dead_lettered("publish_refused")
        fetched.progress.finish(record.offset)
        self.committer.touch()
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
            return await self.work.handle(message)
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
        letter = dead_letter_of(record, self.name, error)
        return Output(self.publisher.dead_letter_topic, record.key, letter)

    async def _drain(self) -> None:
        if self.tasks:
            log.info(
                "draining %d in-flight records", len(self.tasks), extra=fields(service=self.name)
            )
            _, pending = await asyncio.wait(set(self.tasks), timeout=self.settings.drain_timeout_s)
            for task in pending:
                task.cancel()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Let the records of the revoked partitions finish (bounded), then commit them, so
        # that their next owner does not redo them.
        self.intake.drop_waiting(revoked)
        running = {task for tp in revoked for task in self._tasks_by_tp.pop(tp, set())}
        if running:
            await asyncio.wait(running, timeout=self.settings.drain_timeout_s)
        await self.committer.commit_revoked(revoked)
        self.intake.forget(revoked)


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
    # A summary for a log line or a dead letter's reason (its raw bytes are kept whole):
    # a long one says how long it was.
    return text if len(text) <= 300 else f"{text[:300]} [cut: {len(text)} characters]"
