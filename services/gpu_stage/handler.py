"""Handle one file at one GPU stage on one host: call the model, return what to publish."""

from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.gpu_stage import work
from services.gpu_stage.host_health import HostHealth
from shared.events import Attempt, FileStageCompleted
from shared.metrics import StageMetrics
from shared.model_stage import FailureKind, FileEnds
from shared.output import Output
from shared.retry import CallOutcome, RetryPolicy, call_with_retries
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
    health: HostHealth
    call_model: ModelCall
    cancelled: Container[str] = frozenset()
    metrics: StageMetrics = field(default_factory=StageMetrics)
    timeouts: work.CallTimeouts = field(default_factory=work.CallTimeouts)

    def __post_init__(self) -> None:
        self.ends = FileEnds(self.stage, self.topics, self.host, self.metrics)

    async def __call__(self, event: FileStageCompleted) -> Sequence[Output]:
        if self.ends.cancelled(event, self.cancelled):
            return []
        request = work.request_for(self.stage, event)
        if self.health.is_dead:
            refused = [self._refused(request, event.next_attempt)]
            return self._fail(event, "deadline", self._dead_reason(), refused)
        timeout_s, policy = self.timeouts.for_file(event.context, self.policy)
        attempts, outcome = await call_with_retries(
            lambda: self._call(request, timeout_s),
            policy,
            host=self.host,
            request=request,
            first_attempt=event.next_attempt,
        )
        self.metrics.attempts(attempts)
        if outcome.ok:
            assert outcome.response is not None
            try:
                context = work.context_after(self.stage, event.context, outcome.response)
            except (KeyError, ValueError, TypeError) as exc:
                reason = f"malformed {self.stage} response: {type(exc).__name__}: {exc}"
                return self._fail(event, "permanent", reason, attempts)
            return self.ends.done(event, context, attempts, gpu_host=self.host)
        if outcome.unreachable and self.health.is_dead:
            return self._fail(event, "deadline", self._dead_reason(), attempts)
        return self._fail(event, outcome.error_kind, outcome.error or "unknown error", attempts)

    async def _call(self, request: dict[str, Any], timeout_s: float) -> CallOutcome:
        outcome = await self.call_model(request, timeout_s)
        if outcome.unreachable:
            self.health.unreachable()
            if self.health.is_dead:
                # Stop retrying: the host is declared dead, later files fail fast.
                return CallOutcome(error_kind="permanent", error=outcome.error, unreachable=True)
        else:
            self.health.reached()
        return outcome

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
            f"GPU host {self.host} unreachable for more than "
            f"{self.health.deadline_s:.0f}s; {self.stage} gave up"
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
