"""Retrying calls to external model APIs: which errors are transient, how long to wait.

Transient (timeouts, connection errors, 5xx, 429) are retried with exponential backoff and
full jitter up to a budget of attempts and time; permanent ones (other 4xx, undecodable
audio) end the file at once. Every attempt is recorded so the tracker can log it.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from shared.backoff import Backoff
from shared.events import Attempt

ErrorKind = Literal["transient", "permanent"]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    budget_s: float = 120.0


@dataclass(frozen=True)
class CallOutcome:
    """What one call returned: a JSON response, or an error and whether it may pass."""

    response: dict[str, Any] | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None
    retry_after_s: float | None = None
    unreachable: bool = False
    # The API answered, but not what was asked for (an LLM's malformed answer): transient, as
    # a model sampled again may answer properly, under its own, smaller bound.
    malformed: bool = False
    # The HTTP status the dependency answered, if it answered one.
    status: int | None = None
    # Not about this file: the dependency is broken (shared/breaker.py); stop retrying.
    systemic: bool = False
    # The dependency answered 200 but broke its contract (a GPU host's answer of the wrong
    # types): the dependency's defect, never the file's. The breaker counts it like a 5xx and
    # a file whose retries end on it waits instead of failing.
    defect: bool = False

    @property
    def ok(self) -> bool:
        return self.error_kind is None


def classify_status(status: int) -> ErrorKind:
    return "transient" if status == 429 or status >= 500 else "permanent"


def backoff_delay(
    policy: RetryPolicy, attempt: int, retry_after_s: float | None, rng: random.Random
) -> float:
    """Full-jitter exponential backoff; a server's Retry-After is a floor."""
    backoff = Backoff(policy.base_delay_s, policy.max_delay_s, jitter=1.0)
    return max(backoff.delay(attempt - 1, rng), retry_after_s or 0.0)


Call = Callable[[], Awaitable[CallOutcome]]


async def call_with_retries(
    call: Call,
    policy: RetryPolicy,
    *,
    host: str | None,
    request: dict[str, Any],
    first_attempt: int = 1,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[Attempt], CallOutcome]:
    """Call until success, a permanent error, or the budget is spent; return every attempt."""
    rng = rng or random.Random()
    attempts: list[Attempt] = []
    started = clock()
    number = first_attempt
    while True:
        began_at, t0 = datetime.now(UTC), clock()
        outcome = await call()
        attempts.append(
            Attempt(
                number=number,
                host=host,
                ok=outcome.ok,
                error_kind=outcome.error_kind,
                error=outcome.error,
                started_at=began_at,
                duration_ms=round((clock() - t0) * 1000, 3),
                request=request,
                response=outcome.response,
            )
        )
        if outcome.ok or outcome.error_kind == "permanent" or outcome.systemic:
            return attempts, outcome
        delay = backoff_delay(policy, len(attempts), outcome.retry_after_s, rng)
        spent = clock() - started
        if len(attempts) >= policy.max_attempts or spent + delay > policy.budget_s:
            return attempts, outcome
        await sleep(delay)
        number += 1


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (the delay form; dates are treated as absent)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def bound_malformed(call: Call, max_malformed: int) -> Call:
    """`call`, whose `max_malformed`-th malformed answer ends the file (a permanent error).

    Malformed answers are retried like any transient error, but each costs a full generation:
    they get their own bound, below the retry budget for outages (LLM_MALFORMED_MAX_ATTEMPTS
    for the LLM stages).
    """
    seen = 0

    async def bounded() -> CallOutcome:
        nonlocal seen
        outcome = await call()
        if not outcome.malformed:
            return outcome
        seen += 1
        if seen < max_malformed:
            return outcome
        return replace(
            outcome,
            error_kind="permanent",
            error=f"{outcome.error} ({seen} malformed answers: giving up)",
        )

    return bounded
