"""Handle one file at an LLM stage: prompt, validate the answer, publish what follows."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from string import Template
from typing import Any

from services.llm_stage.prompting import messages_for
from shared.events import Attempt, FileFailed, FileStageCompleted, encode, file_key
from shared.logging import fields
from shared.metrics import StageMetrics
from shared.retry import CallOutcome, RetryPolicy, call_with_retries
from shared.runtime.stage_runner import Output, Record
from shared.stages import LlmStage
from shared.topics import Topics

log = logging.getLogger(__name__)

ChatCall = Callable[[LlmStage, list[dict[str, str]]], Awaitable[CallOutcome]]
PREVIOUS: dict[LlmStage, str] = {"llm1": "stt", "llm2": "llm1"}


def decoder_for(stage: LlmStage) -> Callable[[bytes], FileStageCompleted]:
    def decode(raw: bytes) -> FileStageCompleted:
        event = FileStageCompleted.model_validate_json(raw)
        if event.stage != PREVIOUS[stage]:
            raise ValueError(
                f"{stage} expects events of stage {PREVIOUS[stage]}, got {event.stage}"
            )
        return event

    return decode


@dataclass
class LlmStageHandler:
    stage: LlmStage
    topics: Topics
    template: Template
    policy: RetryPolicy
    chat: ChatCall
    # One limit for the whole process, whichever stage asks (LLM_MAX_CONCURRENCY).
    concurrency: asyncio.Semaphore
    cancelled: Container[str] = frozenset()
    # The LLM API's address, for logs and metrics (a GPU stage's is its GPU host).
    host: str | None = None
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
        messages = messages_for(self.template, self.stage, event.context, event.file_name)
        request: dict[str, Any] = {"messages": messages}
        attempts, outcome = await call_with_retries(
            lambda: self._limited(messages),
            self.policy,
            host=None,
            request=request,
            first_attempt=event.next_attempt,
        )
        self.metrics.attempts(attempts)
        if outcome.ok:
            context = event.context.model_copy(update={self.stage: outcome.response})
            done = FileStageCompleted(
                batch_id=event.batch_id,
                file_name=event.file_name,
                stage=self.stage,
                context=context,
                attempts=tuple(attempts),
            )
            self.metrics.file_finished("done")
            return [Output(self._next_topic(), key, encode(done))]
        return [Output(self.topics.failed, key, encode(self._failed(event, outcome, attempts)))]

    async def _limited(self, messages: list[dict[str, str]]) -> CallOutcome:
        async with self.concurrency:
            return await self.chat(self.stage, messages)

    def _next_topic(self) -> str:
        return self.topics.llm("llm2") if self.stage == "llm1" else self.topics.done

    def _failed(
        self, event: FileStageCompleted, outcome: CallOutcome, attempts: list[Attempt]
    ) -> FileFailed:
        error = outcome.error or "unknown error"
        log.warning(
            "%s failed: %s",
            self.stage,
            error,
            extra=fields(
                batch=event.batch_id,
                file=event.file_name,
                stage=self.stage,
                host=self.host,
                attempt=attempts[-1].number if attempts else event.next_attempt,
            ),
        )
        self.metrics.file_finished("failed")
        return FileFailed(
            batch_id=event.batch_id,
            file_name=event.file_name,
            stage=self.stage,
            error_kind=outcome.error_kind or "transient",
            error=error,
            attempts=tuple(attempts),
            input_event=event.model_dump(mode="json"),
        )
