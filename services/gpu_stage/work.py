"""Pure logic of a GPU stage: the request it sends, and the event it publishes next."""

from typing import Any

from shared.events import Attempt, FileContext, FileFailed, FileStageCompleted
from shared.stages import GpuStage
from shared.topics import Topics


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
    """Fold a model's answer into the file's context, validating what later stages rely on."""
    if stage == "denoise":
        update: dict[str, Any] = {
            "denoised_uri": str(response["denoised_uri"]),
            "duration_s": float(response["duration_s"]),
        }
    elif stage == "ivr":
        update = {"is_ivr": bool(response["is_ivr"])}
    elif stage == "lid":
        update = {"language": str(response["language"])}
    else:
        update = {"transcript": str(response["transcript"])}
    return context.model_copy(update=update)


def next_topic(stage: GpuStage, host: str, topics: Topics) -> str:
    if stage == "denoise":
        return topics.gpu("ivr", host)
    if stage == "ivr":
        return topics.gpu("lid", host)
    if stage == "lid":
        return topics.triage
    return topics.llm("llm1")


def completed(
    stage: GpuStage, event: FileStageCompleted, context: FileContext, attempts: list[Attempt]
) -> FileStageCompleted:
    return FileStageCompleted(
        batch_id=event.batch_id,
        file_name=event.file_name,
        stage=stage,
        context=context,
        attempts=tuple(attempts),
    )


def failed(
    stage: GpuStage,
    event: FileStageCompleted,
    host: str,
    error_kind: str,
    error: str,
    attempts: list[Attempt],
) -> FileFailed:
    return FileFailed(
        batch_id=event.batch_id,
        file_name=event.file_name,
        stage=stage,
        host=host,
        error_kind=error_kind,
        error=error,
        attempts=tuple(attempts),
        input_event=event.model_dump(mode="json"),
    )
