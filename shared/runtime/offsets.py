"""Which offset of a partition may be committed while work on it runs concurrently."""

from collections import deque
from dataclasses import dataclass, field


@dataclass
class PartitionProgress:
    """Offsets of one partition: those in flight and the next one safe to commit.

    Records are started in offset order; they may finish in any order. The committable
    position is the lowest offset still in flight (everything below it finished), or one
    past the highest started offset when nothing is in flight.
    """

    in_flight: set[int] = field(default_factory=set)
    highest_started: int = -1
    committed: int = -1
    # Started offsets that no commit covers yet, ascending: a kill -9 now would redo them.
    uncommitted: deque[int] = field(default_factory=deque)

    def start(self, offset: int) -> None:
        self.in_flight.add(offset)
        self.uncommitted.append(offset)
        self.highest_started = max(self.highest_started, offset)

    def finish(self, offset: int) -> None:
        self.in_flight.discard(offset)

    def committable(self) -> int | None:
        """Position to commit if it moved since the last commit, else None."""
        if self.highest_started < 0:
            return None
        position = min(self.in_flight) if self.in_flight else self.highest_started + 1
        return position if position > self.committed else None

    def mark_committed(self, position: int) -> None:
        self.committed = max(self.committed, position)
        while self.uncommitted and self.uncommitted[0] < self.committed:
            self.uncommitted.popleft()

    @property
    def held(self) -> int:
        """Records started and not yet committed, finished or not."""
        return len(self.uncommitted)
