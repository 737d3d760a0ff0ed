"""Whether a GPU host has been unreachable for longer than its deadline."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class HostHealth:
    """Shared by every request to one host: once it is dead, files fail fast."""

    deadline_s: float
    clock: Callable[[], float] = time.monotonic
    unreachable_since: float | None = field(default=None)

    def reached(self) -> None:
        self.unreachable_since = None

    def unreachable(self) -> None:
        if self.unreachable_since is None:
            self.unreachable_since = self.clock()

    def dead_for(self) -> float:
        """Seconds past the deadline the host has been unreachable (<= 0: not dead)."""
        if self.unreachable_since is None:
            return 0.0
        return self.clock() - self.unreachable_since - self.deadline_s

    @property
    def is_dead(self) -> bool:
        return self.dead_for() > 0
