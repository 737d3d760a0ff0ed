"""What a GPU stage exchanges with a host: the request it sends, how long it waits, and what
the answer (validated by the contract's models, `model_contract.py`) adds to the context."""

from dataclasses import dataclass, replace
from typing import Any

from services.gpu_stage.model_contract import parse_answer
from shared.events import FileContext, FileStageCompleted
from shared.retry import RetryPolicy
from shared.stages import GpuStage


def audio_for(stage: GpuStage, context: FileContext) -> str:
    """Stages after denoise work on the denoised audio."""
    if stage == "denoise" or context.denoised_uri is None:
        return context.audio_uri
    return context.denoised_uri


def request_for(stage: GpuStage, event: FileStageCompleted) -> dict[str, Any]:
    ctx = event.context
    inputs: dict[str, Any] = {}
    if stage == "stt" and ctx.language:
        inputs["language"] = ctx.language
    return {
        "batch_id": event.batch_id,
        "file_name": event.file_name,
        "audio_uri": audio_for(stage, ctx),
        "inputs": inputs,
    }


def context_after(stage: GpuStage, context: FileContext, response: dict[str, Any]) -> FileContext:
    """Fold a model's answer into the file's context.

    The answer is validated by the stage's contract model (strict types); its declared fields
    are fields of the context, held to the events' bounds (`shared/events.py`: a 400-digit or
    1e300 `duration_s`, an endless transcript). Raises `pydantic.ValidationError` for an
    answer the contract or a bound does not accept and `UnknownStage` for a stage it has no
    model for.
    """
    answer = parse_answer(stage, response)
    update = {name: getattr(answer, name) for name in type(answer).model_fields}
    return FileContext.model_validate(context.model_dump() | update)


@dataclass(frozen=True)
class CallTimeouts:
    """A request's timeout: a base plus seconds per second of the call's audio, when known.

    A model's time grows with the audio (an hour-long call takes minutes), so one fixed
    timeout either cuts long calls off or waits minutes on a hung short one. The retry budget
    grows by the same margin per attempt, so a long call can still be retried.
    """

    base_s: float = 30.0
    per_audio_s: float = 0.0

    def for_file(self, context: FileContext, policy: RetryPolicy) -> tuple[float, RetryPolicy]:
        extra = self.per_audio_s * (context.duration_s or 0.0)
        if extra <= 0:
            return self.base_s, policy
        return self.base_s + extra, replace(
            policy, budget_s=policy.budget_s + extra * policy.max_attempts
        )
