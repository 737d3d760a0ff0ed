"""Readiness: named checks over the latest answers of a service's dependencies."""

import time
from collections.abc import Callable

# A check returns None when its dependency is fine, or why the service is not ready.
Check = Callable[[], str | None]


class Heartbeat:
    """The latest answer of one dependency (the broker, the database) and when it came.

    Ready means: the last call answered, and not too long ago (a probe that stopped calling,
    or a call that hangs, must not leave a stale "fine" behind).
    """

    def __init__(self, what: str, max_age_s: float, clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.max_age_s = max_age_s
        self.clock = clock
        self.answered_at: float | None = None
        self.error: str | None = None

    def answered(self) -> None:
        self.answered_at = self.clock()
        self.error = None

    def failed(self, error: str) -> None:
        self.error = error

    def problem(self) -> str | None:
        if self.error is not None:
            return f"{self.what}: {self.error}"
        if self.answered_at is None:
            return f"{self.what}: no answer yet"
        age = self.clock() - self.answered_at
        if age > self.max_age_s:
            return f"{self.what}: no answer for {age:.0f}s"
        return None


class Readiness:
    """Every check must pass for the service to be ready."""

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        if name in self.checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self.checks[name] = check

    def problems(self) -> dict[str, str]:
        """Why the service is not ready, per check; empty when it is."""
        found = {name: check() for name, check in self.checks.items()}
        return {name: problem for name, problem in found.items() if problem is not None}
