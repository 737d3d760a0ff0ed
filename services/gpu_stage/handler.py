"""Handle one file at one GPU stage on one host: call the model, return what to publish."""

from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.gpu_stage import work
from shared.breaker import CircuitBreaker, call_through
from shared.events import Attempt, FileStageCompleted
from shared.metrics import StageMetrics
from shared.model_stage import FailureKind, FileEnds
from shared.output import Output
from shared.retry import CallOutcome, RetryPolicy
from shared.stages import GpuStage
from shared.topics import Topics

# (request, timeout in seconds): a model's time grows with the call's length.
ModelCall = Callable[[dict[str, Any], float], Awaitable[CallOutcome]]


@dataclass
class GpuStageHandler:
    stage: GpuStage
    host: str
    topics: Topics
    policy: RetryPolicy
    # Per (stage, host): while the host is down the stage pauses and its files wait.
    breaker: CircuitBreaker
    call_model: ModelCall
    # Open this long, the host is dead: its files are failed over (None: they wait).
    failover_after_s: float | None = None
    cancelled: Container[str] = frozenset()
    metrics: StageMetrics = field(default_factory=StageMetrics)
    timeouts: work.CallTimeouts = field(default_factory=work.CallTimeouts)

    def __post_init__(self) -> None:
        self.ends = FileEnds(self.stage, self.topics, self.host, self.metrics)

    async def __call__(self, event: FileStageCompleted) -> Sequence[Output]:
        if self.ends.cancelled(event, self.cancelled):
            return []
        request = work.request_for(self.stage, event)
        timeout_s, policy = self.timeouts.for_file(event.context, self.policy)
        attempts, outcome = await call_through(
            self.breaker,
            lambda: self.call_model(request, timeout_s),
            policy,
            file=f"{event.batch_id}/{event.file_name}",
            host=self.host,
            request=request,
            first_attempt=event.next_attempt,
            give_up_after_s=self.failover_after_s,
        )
        self.metrics.attempts(attempts)
        if outcome is None:
            attempts = attempts or [self._refused(request, event.next_attempt)]
            return self._fail(event, "deadline", self._dead_reason(), attempts)
        if outcome.ok:
            assert outcome.response is not None
            try:
                context = work.context_after(self.stage, event.context, outcome.response)
            except (KeyError, ValueError, TypeError) as exc:
                reason = f"malformed {self.stage} response: {type(exc).__name__}: {exc}"
                return self._fail(event, "permanent", reason, attempts)
            return self.ends.done(event, context, attempts, gpu_host=self.host)
        return self._fail(event, outcome.error_kind, outcome.error or "unknown error", attempts)

    def paused(self) -> bool:
        """Take no new records while the host is down, until it is judged dead."""
        if not self.breaker.is_open:
            return False
        return self.failover_after_s is None or self.breaker.open_for() < self.failover_after_s

    def _fail(
        self,
        event: FileStageCompleted,
        kind: FailureKind | None,
        reason: str,
        attempts: Sequence[Attempt],
    ) -> list[Output]:
        return self.ends.failed(event, kind, reason, attempts, gpu_host=self.host)

    def _dead_reason(self) -> str:
        return (
            f"GPU host {self.host} down for more than {self.failover_after_s or 0:.0f}s "
            f"({self.breaker.reason}: {self.breaker.detail}); {self.stage} gave up"
        )

    def _refused(self, request: dict[str, Any], number: int) -> Attempt:
        return Attempt(
            number=number,
            host=self.host,
            ok=False,
            error_kind="transient",
            error=self._dead_reason(),
            started_at=datetime.now(UTC),
            request=request,
        )
