"""What the GPU and LLM stages share about a file: its input, and the ways it ends there.

A model-calling stage reads the previous stage's completed event (`shared.pipeline`), and a
file ends as done (on the next stage's topic), failed (on the dead-letter topic), or not
started because its batch was cancelled. Each end is logged and counted the same way.
"""

import logging
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Literal

from shared import pipeline
from shared.events import Attempt, FileContext, FileFailed, FileStageCompleted, file_key
from shared.logging import fields
from shared.metrics import StageMetrics
from shared.output import Output
from shared.stages import StageName
from shared.topics import Topics

log = logging.getLogger(__name__)

# "deadline": the GPU host was unreachable for longer than its deadline.
FailureKind = Literal["transient", "permanent", "deadline"]


def decoder_for(stage: str) -> Callable[[bytes], FileStageCompleted]:
    """Decode a stage's input, refusing events that belong on another topic."""
    before = pipeline.previous(stage)
    if before is None:
        raise ValueError(f"{stage} has no previous stage to read from")
    expected = before.name

    def decode(raw: bytes) -> FileStageCompleted:
        event = FileStageCompleted.model_validate_json(raw)
        if event.stage != expected:
            raise ValueError(f"{stage} expects events of stage {expected}, got {event.stage}")
        return event

    return decode


@dataclass(frozen=True)
class FileEnds:
    """How files end at one stage; `host` names where the stage runs, in logs and metrics."""

    stage: StageName
    topics: Topics
    host: str | None
    metrics: StageMetrics

    def cancelled(self, event: FileStageCompleted, batches: Container[str]) -> bool:
        """True if the file's batch was cancelled: the file is not started, nothing published."""
        if event.batch_id not in batches:
            return False
        log.info(
            "batch cancelled: %s not started",
            self.stage,
            extra=self._about(event, event.next_attempt),
        )
        self.metrics.file_finished("cancelled")
        return True

    def done(
        self,
        event: FileStageCompleted,
        context: FileContext,
        attempts: Sequence[Attempt],
        gpu_host: str | None = None,
    ) -> list[Output]:
        """The completed event, on the next stage's input topic (per host after a GPU stage).
        The next stage counts its attempts from the file's base on this host (0, or the
        highest number it had used before a failover moved it)."""
        high = max((a.number for a in attempts), default=0)
        if high > context.attempt_high:
            context = context.model_copy(update={"attempt_high": high})
        completed = FileStageCompleted(
            batch_id=event.batch_id,
            file_name=event.file_name,
            stage=self.stage,
            context=context,
            attempts=tuple(attempts),
            next_attempt=context.attempt_base + 1,
        )
        self.metrics.file_finished("done")
        topic = pipeline.output_topic(self.stage, self.topics, gpu_host)
        return [Output(topic, file_key(event.batch_id, event.file_name), completed)]

    def failed(
        self,
        event: FileStageCompleted,
        kind: FailureKind | None,
        reason: str,
        attempts: Sequence[Attempt],
        gpu_host: str | None = None,
    ) -> list[Output]:
        """The file's last word at this stage, on the dead-letter topic, with its input."""
        # Numbers continue across `cofi retry`, so the count is not the number.
        number = attempts[-1].number if attempts else event.next_attempt
        log.warning("%s failed: %s", self.stage, reason, extra=self._about(event, number))
        self.metrics.file_finished("failed")
        failure = FileFailed(
            batch_id=event.batch_id,
            file_name=event.file_name,
            stage=self.stage,
            host=gpu_host,
            error_kind=kind or "transient",
            error=reason,
            attempts=tuple(attempts),
            input_event=event.model_dump(mode="json"),
        )
        return [Output(self.topics.failed, file_key(event.batch_id, event.file_name), failure)]

    def log_reassigned(self, event: FileStageCompleted, reason: str, base: int) -> None:
        log.warning(
            "%s handed back for another host: %s",
            self.stage,
            reason,
            extra=self._about(event, base),
        )

    def _about(self, event: FileStageCompleted, attempt: int) -> dict[str, object]:
        return fields(
            batch=event.batch_id,
            file=event.file_name,
            stage=self.stage,
            host=self.host,
            attempt=attempt,
        )
