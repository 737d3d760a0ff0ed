"""Committing a stage consumer's progress: the low-water mark plus the finished offsets.

Each commit of a partition is its low-water mark with the finished offsets above it in the
commit's metadata (`offsets.PartitionProgress`, `offset_metadata`). A commit is made when
asked (every slot held, records skipped), at least every `interval_s` while records finish
or arrive (which also records the other finishes and retries a failed commit), for the
revoked partitions on a rebalance, and at shutdown. A commit frees the slots of the records
it recorded (`slot_freed`). With nothing finished or fetched since the last commit, the loop
sleeps until something is (`touch`): an idle consumer makes no wake-ups for it.
"""

import asyncio
import contextlib
import logging

from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from shared.logging import fields
from shared.runtime.offsets import Commit, PartitionProgress
from shared.runtime.ports import Consumer

log = logging.getLogger(__name__)


class Committer:
    def __init__(self, name: str, consumer: Consumer, interval_s: float = 0.2) -> None:
        self.name = name
        self.consumer = consumer
        self.interval_s = interval_s
        # Every assigned partition's progress; the intake adds them, a revocation drops them.
        self.progress: dict[TopicPartition, PartitionProgress] = {}
        self.slot_freed = asyncio.Event()
        self.wanted = asyncio.Event()
        # Set when a record finished or was fetched since the last commit (or it failed).
        self.changed = asyncio.Event()
        self._lock = asyncio.Lock()

    def unrecorded(self) -> int:
        """Finished records no commit recorded yet: each still holds its slot."""
        return sum(len(p.unrecorded) for p in self.progress.values())

    def want(self) -> None:
        """Commit soon, without waiting for the interval."""
        self.changed.set()
        self.wanted.set()

    def touch(self) -> None:
        """Progress moved (a record finished or was fetched): commit within the interval."""
        self.changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Commit when asked and at least every `interval_s` while progress moves, until
        `stop` (or until cancelled while it sleeps)."""
        while not stop.is_set():
            await self.changed.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wanted.wait(), self.interval_s)
            self.wanted.clear()
            self.changed.clear()
            if not await self.commit():
                self.changed.set()  # failed: try again after the interval

    async def commit(self, only: set[TopicPartition] | None = None) -> bool:
        """Commit what moved; False if the broker refused (the caller tries again)."""
        async with self._lock:
            assigned = self.consumer.assignment()
            commits: dict[TopicPartition, tuple[PartitionProgress, Commit]] = {
                tp: (p, c)
                for tp, p in self.progress.items()
                if (only is None or tp in only) and tp in assigned and (c := p.commit())
            }
            if not commits:
                return True
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
                return False
            for progress, commit in commits.values():
                progress.mark_committed(commit)
            self.slot_freed.set()
            return True

    async def commit_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit the revoked partitions (their records finished or given up on), then
        forget them: their next owner resumes from this commit."""
        await self.commit(only=revoked)
        for tp in revoked:
            self.progress.pop(tp, None)
        self.slot_freed.set()  # what the revoked partitions held no longer counts
