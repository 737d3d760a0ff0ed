"""Per-record completion of one partition, and what to commit for it. Pure: no Kafka here.

Records arrive in offset order and finish in any order. The commit is the partition's
low-water mark (`position`: the lowest offset not known finished, everything below it is) plus
the finished offsets above it, in the commit's metadata (`offset_metadata`). A partition
resumed from such a commit skips the offsets the metadata names, so one slow record never
makes the records after it wait, and a restart redoes only what had not finished.
"""

from dataclasses import dataclass, field
from enum import Enum

from shared.runtime import offset_metadata


class Admit(Enum):
    START = "start"  # process it
    SKIP = "skip"  # finished already (by this consumer's predecessor): do not process again
    WAIT = "wait"  # beyond what the metadata can hold: fetch it again once the mark moves


@dataclass(frozen=True)
class Commit:
    position: int
    metadata: str
    # Finished records this commit makes durable (below `position` or in `metadata`).
    recorded: frozenset[int]


@dataclass
class PartitionProgress:
    max_bytes: int = 4096
    position: int | None = None  # the low-water mark; None until the first record or commit
    next_offset: int | None = None  # one past the highest offset seen (started or skipped)
    in_flight: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)  # finished offsets above `position`
    # Finished records that no successful commit records yet: a kill -9 now would redo them.
    unrecorded: set[int] = field(default_factory=set)
    committed: tuple[int, str] | None = None
    waiting_at: int | None = None  # an offset refused by the metadata bound, to fetch again

    def __post_init__(self) -> None:
        self.max_span = offset_metadata.max_span(self.max_bytes)

    @classmethod
    def resume(cls, committed: int | None, metadata: str, max_bytes: int) -> "PartitionProgress":
        """Progress of a partition whose last commit was (`committed`, `metadata`)."""
        if committed is None or committed < 0:
            return cls(max_bytes)
        return cls(
            max_bytes,
            position=committed,
            next_offset=committed,
            finished=set(offset_metadata.decode(metadata, committed, max_bytes)),
            committed=(committed, metadata),
        )

    def admit(self, offset: int) -> Admit:
        """A fetched record, in offset order: start it, skip it, or wait (see `at_bound`)."""
        if self.position is None or self.next_offset is None:
            self.position = self.next_offset = offset
        if offset > self.next_offset:
            # Fetched in order: the offsets between do not exist (compaction, transaction
            # markers, retention), so they cannot hold the low-water mark back.
            self.next_offset = offset
            self._advance()
        if offset < self.position or offset in self.finished or offset in self.in_flight:
            self.next_offset = max(self.next_offset, offset + 1)
            self._advance()
            return Admit.SKIP
        if offset - self.position > self.max_span:
            self.waiting_at = offset
            return Admit.WAIT
        self.waiting_at = None
        self.in_flight.add(offset)
        self.next_offset = max(self.next_offset, offset + 1)
        return Admit.START

    def finish(self, offset: int) -> None:
        """A started record finished: the broker acknowledged all it produced."""
        if offset not in self.in_flight:
            return
        self.in_flight.discard(offset)
        self.finished.add(offset)
        self.unrecorded.add(offset)
        self._advance()

    def _advance(self) -> None:
        assert self.next_offset is not None
        # Below the lowest offset in flight every seen offset finished; with none in flight,
        # unseen offsets that a predecessor finished (the metadata's) are passed over too.
        low = min(self.in_flight) if self.in_flight else self.next_offset
        if self.position is not None:
            low = max(low, self.position)  # everything below it is known finished
        while low in self.finished:
            low += 1
        if low != self.position:
            self.position = low
            self.finished = {o for o in self.finished if o > low}

    def commit(self) -> Commit | None:
        """What to commit now, or None if the last commit says it all."""
        if self.position is None:
            return None
        encoded = offset_metadata.encode(self.position, self.finished, self.max_bytes)
        if self.committed == (self.position, encoded.metadata):
            return None
        recorded = frozenset(o for o in self.unrecorded if o < self.position or o in encoded.kept)
        return Commit(self.position, encoded.metadata, recorded)

    def mark_committed(self, commit: Commit) -> None:
        self.committed = (commit.position, commit.metadata)
        self.unrecorded -= commit.recorded

    @property
    def held(self) -> int:
        """Records holding a slot: in flight, or finished and not yet recorded by a commit.
        What a kill -9 now would make this partition redo."""
        return len(self.in_flight) + len(self.unrecorded)

    @property
    def at_bound(self) -> bool:
        """The next record lies beyond what the metadata can hold: this partition waits
        (until its low-water mark moves), the others go on."""
        return (
            self.waiting_at is not None
            and self.position is not None
            and self.waiting_at - self.position > self.max_span
        )
