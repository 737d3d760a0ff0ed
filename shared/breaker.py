"""A circuit breaker for a stage's dependency (a GPU host's model API, the LLM API).

Some failures are about the file (a corrupt WAV is a 422, a missing one a 404 naming it) and
end that file. Others are about the dependency: a refused connection, an auth error, a
route that is not there, a storm of 5xx. Dead-lettering every file through such an outage
turns one broken dependency into a batch of failures, so instead the breaker *opens*:

- the stage stops taking records (`StageRunner(paused=...)` pauses its partitions), and the
  records it holds wait in `admit` instead of failing;
- one waiting caller at a time probes, with capped exponential backoff: the dependency's
  cheap probe (a health route) if there is one, then that caller's own call (half-open).
  A probe only lets the trial call go: a health route that answers 200 while every call
  fails closes nothing, and a dependency without a probe route (404) is tried by calls;
- the first call that gets an answer about the file (success or a file error) closes it,
  and the waiting records and the partitions go on by themselves;
- a circuit that opens again soon after it closed (`reopen_within_s`) keeps its first
  opening time, so a flapping dependency still reaches the failover deadline.

How a call's outcome reads (`BreakerPolicy`):
- 401, 403, 407: at once (credentials are never about one file);
- a refused connection: `unreachable_after` in a row;
- 429: `throttled_after` in a row (the dependency pacing every caller: pause, not spin);
- 5xx and timeouts: `storm_after` in a row;
- a 200 that breaks the contract (`CallOutcome.defect`, a GPU host's answer of the wrong
  types): `malformed_after` in a row (`malformed`), logged naming the host and the field;
- a 404 (or 410) with the same message on two different files in a row (a missing route;
  a missing audio file names the file, so its message differs).

A file whose retries run out on an answer that says the dependency is unavailable (a
refused connection, 429, 502, 503, 504; `unavailable`), or on a malformed answer (the
dependency's defect), does not fail either: that says
nothing about the file, so the circuit opens and the file waits (for at least the
Retry-After the dependency asked for). A 500 or a timeout may be the file's own doing
(a model that crashes or hangs on it): the file fails once its retries are spent, unless
the storm opened the circuit first.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from shared.backoff import Backoff
from shared.events import Attempt
from shared.logging import fields
from shared.retry import Call, CallOutcome, RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

# Why a circuit is open, as the label of `cofi_stage_circuit_open`.
OpenReason = Literal[
    "auth", "unreachable", "server_errors", "not_found", "rate_limited", "unavailable", "malformed"
]
AUTH_STATUSES = frozenset({401, 403, 407})
NOT_FOUND_STATUSES = frozenset({404, 410})
# Answers in which the dependency says it cannot serve anyone right now.
UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})

Probe = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class BreakerPolicy:
    unreachable_after: int = 3
    storm_after: int = 10
    throttled_after: int = 10
    malformed_after: int = 3
    first_probe_s: float = 0.5
    max_probe_s: float = 10.0
    # Closed for less than this before opening again: the same outage (`opened_at` is kept).
    reopen_within_s: float = 60.0


def unavailable(outcome: CallOutcome) -> OpenReason | None:
    """Why this failed outcome says the dependency cannot serve anyone (not the file), if
    it does: a file whose retries end on it waits instead of failing."""
    if outcome.ok or outcome.error_kind == "permanent":
        return None
    if outcome.unreachable:
        return "unreachable"
    if outcome.defect:
        return "malformed"
    if outcome.status == 429:
        return "rate_limited"
    if outcome.status in UNAVAILABLE_STATUSES:
        return "unavailable"
    return None


def judge(
    outcome: CallOutcome, last_not_found: tuple[str, str] | None, file: str
) -> OpenReason | None:
    """The reason this one outcome opens the circuit by itself, if it does (auth, a 404
    repeated on another file); counted reasons (unreachable, storms) are the breaker's."""
    if outcome.status in AUTH_STATUSES:
        return "auth"
    if outcome.status in NOT_FOUND_STATUSES and last_not_found is not None:
        message, other_file = last_not_found
        if other_file != file and message == outcome.error:
            return "not_found"
    return None


def _about_the_file(outcome: CallOutcome) -> bool:
    """Success, or an answer below 500 other than 429 that keeps the contract: whatever it
    says is about the file."""
    if outcome.ok:
        return True
    if outcome.defect:
        return False
    return outcome.status is not None and outcome.status < 500 and outcome.status != 429


class CircuitBreaker:
    def __init__(
        self,
        stage: str,
        host: str | None,
        policy: BreakerPolicy | None = None,
        probe: Probe | None = None,
        on_change: Callable[[OpenReason | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.stage = stage
        self.host = host
        self.policy = policy or BreakerPolicy()
        self.probe = probe
        self.on_change = on_change
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.reason: OpenReason | None = None
        self.detail = ""
        self.opened_at = 0.0
        self.failed_probes = 0
        self._trial: asyncio.Task[Any] | None = None
        self._changed = asyncio.Event()
        self._unreachable_run = 0
        self._storm_run = 0
        self._throttle_run = 0
        self._malformed_run = 0
        self._last_not_found: tuple[str, str] | None = None
        self._next_late_trial = 0.0
        # No trial before this (a Retry-After the dependency asked for).
        self._hold_until = 0.0
        # When it last closed, and when that outage had begun: a quick reopening continues it.
        self._closed_at: float | None = None
        self._outage_began = 0.0

    @property
    def is_open(self) -> bool:
        return self.reason is not None

    def paused(self) -> bool:
        """For `StageRunner(paused=...)`: take no new records while open."""
        return self.is_open

    def open_for(self) -> float:
        return self.clock() - self.opened_at if self.is_open else 0.0

    def problem(self) -> str | None:
        """For `/readyz`: why the stage is paused, or None when it is not."""
        if self.reason is None:
            return None
        return (
            f"circuit open for {self.open_for():.0f}s ({self.reason}): {self.detail}; "
            f"probes failed: {self.failed_probes}"
        )

    # -- outcomes ------------------------------------------------------------------------
    def observe(self, outcome: CallOutcome, file: str) -> CallOutcome:
        """Count one call's outcome; a systemic one comes back marked so retries stop."""
        reason = judge(outcome, self._last_not_found, file)
        if reason is None and _about_the_file(outcome):
            # The dependency answered (success, a 422, a malformed answer): it works.
            self._unreachable_run = self._storm_run = self._throttle_run = 0
            self._malformed_run = 0
            self._last_not_found = None
            if outcome.status in NOT_FOUND_STATUSES and outcome.error:
                self._last_not_found = (outcome.error, file)
            self._close()
            return outcome
        if outcome.unreachable:
            self._unreachable_run += 1
            if self._unreachable_run >= self.policy.unreachable_after:
                reason = "unreachable"
        elif outcome.defect:
            self._malformed_run += 1
            log.warning(
                "malformed answer (%d in a row): %s",
                self._malformed_run,
                (outcome.error or "")[:300],
                extra=fields(stage=self.stage, host=self.host),
            )
            if self._malformed_run >= self.policy.malformed_after:
                reason = "malformed"
        elif outcome.status == 429:
            self._throttle_run += 1
            if self._throttle_run >= self.policy.throttled_after:
                reason = "rate_limited"
        else:  # a 5xx, or no answer in time
            self._storm_run += 1
            if self._storm_run >= self.policy.storm_after:
                reason = "server_errors"
        if reason is None and not self.is_open:
            return outcome  # an ordinary transient error: retried by the caller's policy
        self._open(reason or self.reason or "server_errors", outcome, outcome.retry_after_s)
        return replace(outcome, systemic=True)

    def spent(self, outcome: CallOutcome) -> CallOutcome:
        """A file's retries ran out on `outcome`. If it says the dependency is unavailable
        (`unavailable`), that is not the file's doing: the circuit opens and it comes back
        systemic (the file waits); otherwise it is the file's failure, unchanged."""
        reason = unavailable(outcome)
        if reason is None or outcome.systemic:
            return outcome
        self._open(reason, outcome, outcome.retry_after_s)
        return replace(outcome, systemic=True)

    def _open(self, reason: OpenReason, outcome: CallOutcome, hold_s: float | None) -> None:
        now = self.clock()
        if hold_s:
            self._hold_until = max(self._hold_until, now + hold_s)
        if self._trial is not None and self._trial is asyncio.current_task():
            self.failed_probes += 1  # the half-open call failed: back off further
            self._trial = None
        if self.reason is None:
            again = self._closed_at is not None and now - self._closed_at < (
                self.policy.reopen_within_s
            )
            # Reopened soon after closing: the same outage, whose deadline runs on.
            self.opened_at = self._outage_began if again else now
            self.reason, self.failed_probes = reason, 0
            self.detail = (outcome.error or "")[:300]
            log.warning(
                "circuit open%s (%s): pausing %s and probing: %s",
                " again" if again else "",
                reason,
                self.stage,
                self.detail,
                extra=fields(stage=self.stage, host=self.host),
            )
            if self.on_change is not None:
                self.on_change(reason)
        self._notify()

    def _close(self) -> None:
        if self._trial is asyncio.current_task():
            self._trial = None
        if self.reason is None:
            return
        log.info(
            "circuit closed after %.1fs (%s): %s resumes",
            self.open_for(),
            self.reason,
            self.stage,
            extra=fields(stage=self.stage, host=self.host),
        )
        self.reason, self.detail = None, ""
        self._closed_at, self._outage_began = self.clock(), self.opened_at
        if self.on_change is not None:
            self.on_change(None)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- waiting -------------------------------------------------------------------------
    async def admit(self, give_up_after_s: float | None = None) -> bool:
        """Return True when the caller may call: at once while closed; while open, one
        caller at a time (the half-open trial) after a backoff and a passing probe, the
        others once it closed. Once the circuit has been open `give_up_after_s`: False,
        except for a trial at most every `max_probe_s` (the dependency may be back)."""
        while self.is_open:
            if give_up_after_s is not None and self.open_for() >= give_up_after_s:
                return await self._late_trial()
            if self._trial is not None and not self._trial.done():
                await self._wait_change(give_up_after_s)
                continue
            me = asyncio.current_task()
            self._trial = me
            try:
                await self.sleep(self._delay())
                if not self.is_open:
                    return True
                if self.probe is not None and not await self._probe_ok():
                    self.failed_probes += 1
                    self._trial = None
                    continue
            except BaseException:
                self._trial = None
                self._notify()
                raise
            return True  # the trial call: `observe` closes the circuit or counts a failure
        return True

    async def _late_trial(self) -> bool:
        """Past the caller's patience its files move elsewhere, but the dependency may come
        back: at most every `max_probe_s`, a caller whose probe passes (or that has none)
        makes the trial call. Only that call's answer can close the circuit."""
        now = self.clock()
        busy = self._trial is not None and not self._trial.done()
        if busy or now < max(self._next_late_trial, self._hold_until):
            return False
        self._next_late_trial = now + self.policy.max_probe_s
        if self.probe is not None and not await self._probe_ok():
            return False
        self._trial = asyncio.current_task()
        return True

    def release(self) -> None:
        """The caller's call is over: if it was the trial and left no verdict, free the
        role (a cancelled call), so another waiter can probe."""
        if self._trial is not None and self._trial is asyncio.current_task():
            self._trial = None
            self._notify()

    async def _probe_ok(self) -> bool:
        assert self.probe is not None
        try:
            return await self.probe()
        except Exception as exc:  # a probe that cannot run is a failed probe
            log.warning("probe failed: %s", exc, extra=fields(stage=self.stage, host=self.host))
            return False

    async def _wait_change(self, give_up_after_s: float | None) -> None:
        timeout = self.policy.max_probe_s
        if give_up_after_s is not None:
            timeout = min(timeout, max(0.0, give_up_after_s - self.open_for()) + 0.01)
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    def _delay(self) -> float:
        probes = Backoff(self.policy.first_probe_s, self.policy.max_probe_s, jitter=0.5)
        return max(probes.delay(self.failed_probes, self.rng), self._hold_until - self.clock())


# Attempts a file keeps while it waits out an outage (the first and the latest): each trial
# call adds one, and an event carrying hours of them would outgrow Kafka's message limit.
KEPT_ATTEMPTS = (5, 15)


def kept(attempts: list[Attempt]) -> list[Attempt]:
    """The first and the latest attempts, when there are more than `KEPT_ATTEMPTS` allow
    (the numbers go on, so the attempts dropped from the middle leave a gap)."""
    first, latest = KEPT_ATTEMPTS
    return attempts if len(attempts) <= first + latest else attempts[:first] + attempts[-latest:]


async def call_through(
    breaker: CircuitBreaker,
    call: Call,
    policy: RetryPolicy,
    *,
    file: str,
    host: str | None,
    request: dict[str, Any],
    first_attempt: int,
    give_up_after_s: float | None = None,
) -> tuple[list[Attempt], CallOutcome | None]:
    """`call_with_retries` behind the breaker: a systemic failure does not end the file, it
    waits for the circuit to close and tries again (attempt numbers go on). Returns every
    attempt and the last outcome, or None as the outcome if the circuit stayed open past
    `give_up_after_s` (the caller fails the file over)."""
    attempts: list[Attempt] = []
    number = first_attempt

    async def observed() -> CallOutcome:
        return breaker.observe(await call(), file)

    while True:
        try:
            if not await breaker.admit(give_up_after_s):
                return attempts, None
            made, outcome = await call_with_retries(
                observed, policy, host=host, request=request, first_attempt=number
            )
        finally:
            breaker.release()
        attempts = kept(attempts + made)
        outcome = breaker.spent(outcome)
        if not outcome.systemic:
            return attempts, outcome
        number = made[-1].number + 1
