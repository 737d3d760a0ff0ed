"""Handle one file at one GPU stage on one host: call the model, return what to publish."""

from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from services.gpu_stage import exchange
from services.gpu_stage.model_contract import answer_model, describe
from shared.audio_uri import AudioUriPolicy, audio_uri_problem
from shared.breaker import CircuitBreaker, call_through, kept
from shared.events import Attempt, FileReassigned, FileStageCompleted
from shared.metrics import StageMetrics
from shared.model_stage import FailureKind, FileEnds
from shared.output import Output
from shared.retry import CallOutcome, RetryPolicy
from shared.settings import GpuHost
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
    # Hosts an operator drained (`cofi drain`, or `:down` in GPU_HOSTS): files hand back.
    drained: Container[str] = frozenset()
    metrics: StageMetrics = field(default_factory=StageMetrics)
    timeouts: exchange.CallTimeouts = field(default_factory=exchange.CallTimeouts)
    # GPU_HOSTS: where a failed-over file could go. None: unknown, always hand back.
    hosts: Sequence[GpuHost] | None = None
    # Checked on the URI the model would fetch: a hand-back or a model's `denoised_uri`
    # reaches here without passing the distributor's check of uploads.
    audio_policy: AudioUriPolicy = field(default_factory=AudioUriPolicy)

    def __post_init__(self) -> None:
        answer_model(self.stage)  # a stage the contract does not know is a wiring mistake
        self.ends = FileEnds(self.stage, self.topics, self.host, self.metrics)

    async def __call__(self, event: FileStageCompleted) -> Sequence[Output]:
        if self.ends.cancelled(event, self.cancelled):
            return []
        request = exchange.request_for(self.stage, event)
        problem = audio_uri_problem(request["audio_uri"], self.audio_policy)
        if problem is not None:
            which = "audio_uri" if self.stage == "denoise" else "the denoised audio's URI"
            reason = f"{which} not sent to GPU host {self.host}: {problem}"
            return self._fail(event, "permanent", reason, [])
        if self.host in self.drained:
            return self._hand_back(event, f"GPU host {self.host} drained by an operator", [])
        timeout_s, policy = self.timeouts.for_file(event.context, self.policy)
        attempts: list[Attempt] = []
        give_up, waited = self.failover_after_s, False
        while True:
            made, outcome = await call_through(
                self.breaker,
                lambda: self.call_model(request, timeout_s),
                policy,
                file=f"{event.batch_id}/{event.file_name}",
                host=self.host,
                request=request,
                first_attempt=attempts[-1].number + 1 if attempts else event.next_attempt,
                give_up_after_s=give_up,
            )
            attempts = kept(attempts + made)
            if outcome is not None:
                break
            others = self._other_hosts()
            if others is None or set(others) - set(event.context.left_hosts):
                self.metrics.attempts(attempts)
                return self._hand_back(event, self._dead_reason(), attempts)
            if others and waited:
                self.metrics.attempts(attempts)
                return self._hand_back(event, self._dead_reason(), attempts, new_round=True)
            # Every other usable host has failed this file over already (the fleet is down),
            # or there is none: it waits here, paused, for another deadline, then goes round
            # again (or waits on, alone), so no file fails for an outage.
            assert self.failover_after_s is not None
            give_up, waited = self.breaker.open_for() + self.failover_after_s, True
        self.metrics.attempts(attempts)
        if outcome.ok:
            assert outcome.response is not None
            try:
                context = exchange.context_after(self.stage, event.context, outcome.response)
            except ValidationError as exc:
                # `call_model` validated the answer already: only a stage wired to a client
                # that skips the contract gets here.
                reason = f"malformed {self.stage} answer from GPU host {self.host}: {describe(exc)}"
                return self._fail(event, "permanent", reason, attempts)
            return self.ends.done(event, context, attempts, gpu_host=self.host)
        return self._fail(event, outcome.error_kind, outcome.error or "unknown error", attempts)

    def _other_hosts(self) -> list[str] | None:
        """Hosts other than this one a failed-over file could go to (None: unknown)."""
        if self.hosts is None:
            return None
        return [
            h.ip
            for h in self.hosts
            if h.ip != self.host and not h.down and h.ip not in self.drained
        ]

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

    def _hand_back(
        self,
        event: FileStageCompleted,
        reason: str,
        attempts: Sequence[Attempt],
        new_round: bool = False,
    ) -> list[Output]:
        """Fail the file over: the distributor assigns it a host other than this one (and
        those it left before; only this one on a `new_round`, when it had left every other)
        and it restarts at denoise there."""
        context = event.context
        numbers = [a.number for a in attempts]
        base = max(context.attempt_high, event.next_attempt - 1, *numbers)
        moved = FileReassigned(
            batch_id=event.batch_id,
            file_name=event.file_name,
            audio_uri=context.audio_uri,
            stage=self.stage,
            from_host=self.host,
            duration_s=context.duration_s,
            avoid=(self.host,) if new_round else self._left_hosts(event),
            assignment=context.assignment + 1,
            attempt_base=base,
            reason=reason,
            attempts=tuple(attempts),
        )
        self.metrics.file_finished("reassigned")
        self.ends.log_reassigned(event, reason, base)
        return [Output(self.topics.uploads, event.batch_id.encode(), moved)]

    def _left_hosts(self, event: FileStageCompleted) -> tuple[str, ...]:
        left = event.context.left_hosts
        return left if self.host in left else (*left, self.host)

    def _dead_reason(self) -> str:
        return (
            f"GPU host {self.host} down for more than {self.failover_after_s or 0:.0f}s "
            f"({self.breaker.reason}: {self.breaker.detail}); {self.stage} failed over"
        )
