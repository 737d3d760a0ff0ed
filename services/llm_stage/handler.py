"""Handle one file at an LLM stage: prompt, validate the answer, return what to publish."""

import asyncio
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from string import Template
from typing import Any

from services.llm_stage.prompting import caller_ref, messages_for
from shared.breaker import CircuitBreaker, call_through
from shared.events import FileStageCompleted
from shared.metrics import StageMetrics
from shared.model_stage import FileEnds
from shared.output import Output
from shared.retry import CallOutcome, RetryPolicy, bound_malformed
from shared.stages import LlmStage
from shared.topics import Topics

# (stage, messages, the file's opaque reference for the API's `user` field)
ChatCall = Callable[[LlmStage, list[dict[str, str]], str], Awaitable[CallOutcome]]


@dataclass
class LlmStageHandler:
    stage: LlmStage
    topics: Topics
    template: Template
    policy: RetryPolicy
    chat: ChatCall
    # One limit for the whole process, whichever stage asks (LLM_MAX_CONCURRENCY).
    concurrency: asyncio.Semaphore
    # While the LLM API is broken (auth, route, down, a 5xx storm) files wait, not fail.
    breaker: CircuitBreaker
    cancelled: Container[str] = frozenset()
    # The LLM API's address, for logs and metrics (a GPU stage's is its GPU host).
    host: str | None = None
    metrics: StageMetrics = field(default_factory=StageMetrics)
    # Malformed answers allowed per file before it fails (LLM_MALFORMED_MAX_ATTEMPTS).
    max_malformed: int = 3

    def __post_init__(self) -> None:
        self.ends = FileEnds(self.stage, self.topics, self.host, self.metrics)

    async def __call__(self, event: FileStageCompleted) -> Sequence[Output]:
        if self.ends.cancelled(event, self.cancelled):
            return []
        messages = messages_for(self.template, self.stage, event.context)
        request: dict[str, Any] = {"messages": messages}
        attempts, outcome = await call_through(
            self.breaker,
            bound_malformed(
                lambda: self._limited(messages, caller_ref(event.batch_id, event.file_name)),
                self.max_malformed,
            ),
            self.policy,
            file=f"{event.batch_id}/{event.file_name}",
            host=None,
            request=request,
            first_attempt=event.next_attempt,
        )
        assert outcome is not None  # no deadline: files wait for the API as long as it takes
        self.metrics.attempts(attempts)
        if outcome.ok:
            context = event.context.model_copy(update={self.stage: outcome.response})
            return self.ends.done(event, context, attempts)
        return self.ends.failed(
            event, outcome.error_kind, outcome.error or "unknown error", attempts
        )

    async def _limited(self, messages: list[dict[str, str]], caller: str) -> CallOutcome:
        async with self.concurrency:
            return await self.chat(self.stage, messages, caller)
