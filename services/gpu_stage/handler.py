"""Handle one file at one GPU stage on one host: call the model, publish what follows."""

import logging
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.gpu_stage import work
from services.gpu_stage.host_health import HostHealth
from shared.events import Attempt, FileStageCompleted, encode, file_key
from shared.logging import fields
from shared.metrics import StageMetrics
from shared.retry import CallOutcome, RetryPolicy, call_with_retries
from shared.runtime.stage_runner import Output, Record
from shared.stages import GpuStage
from shared.topics import Topics

log = logging.getLogger(__name__)

ModelCall = Callable[[dict[str, Any]], Awaitable[CallOutcome]]

PREVIOUS: dict[GpuStage, str] = {
    "denoise": "distribute",
    "ivr": "denoise",
    "lid": "ivr",
    "stt": "triage",
}


def decoder_for(stage: GpuStage) -> Callable[[bytes], FileStageCompleted]:
    """Decode a stage's input, refusing events that belong on another topic."""

    def decode(raw: bytes) -> FileStageCompleted:
        event = FileStageCompleted.model_validate_json(raw)
        if event.stage != PREVIOUS[stage]:
            raise ValueError(
                f"{stage} expects events of stage {PREVIOUS[stage]}, got {event.stage}"
            )
        return event

    return decode


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

    async def __call__(self, event: FileStageCompleted, record: Record) -> Sequence[Output]:
        if event.batch_id in self.cancelled:
            log.info(
                "batch cancelled: %s not started",
                self.stage,
                extra=fields(
                    batch=event.batch_id,
                    file=event.file_name,
                    stage=self.stage,
                    host=self.host,
                    attempt=event.next_attempt,
                ),
            )
            self.metrics.file_finished("cancelled")
            return []
        key = file_key(event.batch_id, event.file_name)
        request = work.request_for(self.stage, event)
        if self.health.is_dead:
            return [
                self._fail(
                    event,
                    key,
                    "deadline",
                    self._dead_reason(),
                    [self._refused(request, event.next_attempt)],
                )
            ]
        attempts, outcome = await call_with_retries(
            lambda: self._call(request),
            self.policy,
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
                return [self._fail(event, key, "permanent", reason, attempts)]
            done = work.completed(self.stage, event, context, attempts)
            self.metrics.file_finished("done")
            return [Output(work.next_topic(self.stage, self.host, self.topics), key, encode(done))]
        if outcome.unreachable and self.health.is_dead:
            return [self._fail(event, key, "deadline", self._dead_reason(), attempts)]
        kind = outcome.error_kind or "transient"
        return [self._fail(event, key, kind, outcome.error or "unknown error", attempts)]

    async def _call(self, request: dict[str, Any]) -> CallOutcome:
        outcome = await self.call_model(request)
        if outcome.unreachable:
            self.health.unreachable()
            if self.health.is_dead:
                # Stop retrying: the host is declared dead, later files fail fast.
                return CallOutcome(error_kind="permanent", error=outcome.error, unreachable=True)
        else:
            self.health.reached()
        return outcome

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

    def _fail(
        self,
        event: FileStageCompleted,
        key: bytes,
        kind: str,
        reason: str,
        attempts: list[Attempt],
    ) -> Output:
        log.warning(
            "%s failed: %s",
            self.stage,
            reason,
            extra=fields(
                batch=event.batch_id,
                file=event.file_name,
                stage=self.stage,
                host=self.host,
                # Numbers continue across `cofi retry`, so the count is not the number.
                attempt=attempts[-1].number if attempts else event.next_attempt,
            ),
        )
        self.metrics.file_finished("failed")
        failure = work.failed(self.stage, event, self.host, kind, reason, attempts)
        return Output(self.topics.failed, key, encode(failure))
