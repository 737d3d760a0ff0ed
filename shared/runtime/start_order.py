"""Which fetched record a consumer starts next: the highest priority first, unless one has
waited too long.

A GPU stage's consumer fetches a few records beyond its free slots (its look-ahead) and, when
a slot frees, starts the one with the longest declared call. With heavy-tailed audio a batch
otherwise ends with one host still running an hour-long call it took late while the others sit
idle (bench/FINDINGS.md, "GPU figure"). A record that `patience` later arrivals have overtaken
goes next whatever its priority, so short calls are not pushed to the end of their batch, nor
behind the next batch. Waiting costs a record nothing a crash could undo: it holds no slot and
made no call, and the commit's low-water mark stays below it until it finishes.
Pure: no Kafka here.
"""

import heapq
import itertools
from collections import Counter, deque
from collections.abc import Collection, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(order=True)
class _Entry(Generic[T]):
    rank: tuple[float, int]  # (-priority, arrival): heapq pops the smallest
    partition: Hashable = field(compare=False)
    item: T = field(compare=False)
    taken: bool = field(default=False, compare=False)

    @property
    def arrival(self) -> int:
        return self.rank[1]


@dataclass
class StartQueue(Generic[T]):
    """Fetched records waiting for a slot: the one `patience` later arrivals overtook first,
    else the highest priority, ties in arrival order."""

    patience: int = 64
    _by_rank: list[_Entry[T]] = field(default_factory=list)
    _by_arrival: deque[_Entry[T]] = field(default_factory=deque)
    _arrivals: "itertools.count[int]" = field(default_factory=itertools.count)
    _last: int = -1
    _per_partition: Counter[Hashable] = field(default_factory=Counter)

    def push(self, partition: Hashable, priority: float, item: T) -> None:
        self._last = next(self._arrivals)
        entry = _Entry((-priority, self._last), partition, item)
        heapq.heappush(self._by_rank, entry)
        self._by_arrival.append(entry)
        self._per_partition[partition] += 1

    def pop(self) -> T:
        """The next record to start (IndexError when none waits)."""
        self._forget_taken()
        if not len(self):
            raise IndexError("no record waits")
        oldest = self._by_arrival[0]
        if self._last - oldest.arrival >= self.patience:
            entry = self._by_arrival.popleft()
        else:
            entry = heapq.heappop(self._by_rank)
        entry.taken = True
        self._per_partition[entry.partition] -= 1
        return entry.item

    def drop(self, partitions: Collection[Hashable]) -> int:
        """Forget the records of `partitions` (revoked: their next owner fetches them)."""
        kept = [e for e in self._by_arrival if not e.taken and e.partition not in partitions]
        dropped = len(self) - len(kept)
        self._by_arrival = deque(kept)
        self._by_rank = list(kept)
        heapq.heapify(self._by_rank)
        self._per_partition = Counter(e.partition for e in kept)
        return dropped

    def count(self, partition: Hashable) -> int:
        """Records of `partition` waiting."""
        return self._per_partition[partition]

    def _forget_taken(self) -> None:
        # Entries taken through the other order stay behind in this one until they surface.
        while self._by_arrival and self._by_arrival[0].taken:
            self._by_arrival.popleft()
        while self._by_rank and self._by_rank[0].taken:
            heapq.heappop(self._by_rank)

    def __len__(self) -> int:
        return self._per_partition.total()
