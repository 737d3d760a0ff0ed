"""Counters the tests and the crash checks read back through /stats."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class Gauge:
    """Current and peak number of requests inside a region."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0

    @contextmanager
    def track(self) -> Iterator[None]:
        self.current += 1
        self.peak = max(self.peak, self.current)
        try:
            yield
        finally:
            self.current -= 1

    def reset(self) -> None:
        # Requests still running count towards the new peak.
        self.peak = self.current


class ServerStats:
    """Calls per key (file name for GPU stages, first prompt line for the LLM) and outcomes."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.responses: Counter[str] = Counter()
        self.concurrency = Gauge()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()
        self.responses.clear()
        self.concurrency.reset()
