"""Pure logic of a GPU stage: the request it sends, and what its answer adds to the context."""

from typing import Any

from shared.events import FileContext, FileStageCompleted
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
