"""The model API every GPU host serves, as pydantic models: what cofi sends, what it accepts back.

These models are the contract at run time, not only in the docs: `model_api.call_model`
validates every answer with `parse_answer` (strictly: `"false"` is not a boolean, `null` is not
a transcript), `exchange.context_after` folds the validated fields into the file's context,
`cofi contracts` renders them into docs/gpu-model-api.yaml and .md, and `cofi check-host`
holds a host to them.
"""

from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.stages import GpuStage

# A URI with a scheme (`file:///…`, `s3://…`): later stages are sent it as their `audio_uri`.
URI_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$"


class StageInputs(BaseModel):
    """Inputs a stage needs besides the audio."""

    language: str | None = Field(
        default=None, description="stt only: the language LID found (e.g. `en`), when known"
    )


class ModelRequest(BaseModel):
    """`POST /v1/<stage>`: one file of one batch."""

    model_config = ConfigDict(title="ModelRequest")
    batch_id: str = Field(min_length=1, max_length=64, description="The batch the file is in")
    file_name: str = Field(min_length=1, description="The file's name within its batch")
    audio_uri: str = Field(
        min_length=1,
        description="The audio to read: the uploaded file for denoise, the denoised file for "
        "later stages (a URI the distributor's allowlist admitted, or one denoise returned)",
    )
    inputs: StageInputs = Field(default_factory=StageInputs)


class GpuAnswer(BaseModel):
    """A 200 answer. Strict JSON types: a string is not a boolean or a number, `null` is
    not a string. Every declared field is a field of the file's context (`FileContext`)."""

    # Hosts may add fields (scores, model versions): cofi keeps them in processing_logs.
    model_config = ConfigDict(extra="allow", strict=True)


class DenoiseResponse(GpuAnswer):
    """Denoise: where the cleaned audio is, and how long the call lasts."""

    denoised_uri: str = Field(
        pattern=URI_PATTERN,
        description="URI of the denoised audio, with its scheme (e.g. `file:///…`); the later "
        "stages of the file, on the same host, are sent it as `audio_uri`",
    )
    duration_s: float = Field(
        ge=0,
        allow_inf_nan=False,
        description="The call's duration in seconds, a JSON number (triage reads it)",
    )


class IvrResponse(GpuAnswer):
    """IVR detection: whether the call is an automated menu rather than a conversation."""

    is_ivr: bool = Field(
        description="JSON `true` or `false` (not a string, not 0/1): true, an IVR call "
        "(triage may skip it)"
    )


class LidResponse(GpuAnswer):
    """Language identification."""

    language: str = Field(
        min_length=1, description="Language code, e.g. `en` (triage rules read it)"
    )


class SttResponse(GpuAnswer):
    """Speech to text."""

    transcript: str = Field(
        description='The call\'s transcript, a string (`""` for a call without speech, never '
        "`null`); the LLM stages read it"
    )


class ErrorResponse(BaseModel):
    """Any non-200 answer; cofi records the status and up to 500 characters of the body."""

    error: str = Field(description="What went wrong, for people reading processing_logs")


class HealthResponse(BaseModel):
    """`GET /health`: 200 when the host can serve its stage; any other answer, or none, is
    not ready. Only the status is read; the body is for people."""

    model_config = ConfigDict(extra="allow")
    status: str = Field(default="ok", description="e.g. `ok`")


RESPONSES: Final[dict[GpuStage, type[GpuAnswer]]] = {
    "denoise": DenoiseResponse,
    "ivr": IvrResponse,
    "lid": LidResponse,
    "stt": SttResponse,
}


class UnknownStage(ValueError):
    """A stage the contract has no answer model for: a wiring mistake, never read as STT."""


def answer_model(stage: str) -> type[GpuAnswer]:
    try:
        return RESPONSES[stage]  # type: ignore[index]
    except KeyError:
        raise UnknownStage(
            f"no answer model for GPU stage {stage!r} (known: {', '.join(RESPONSES)})"
        ) from None


def parse_answer(stage: str, body: object) -> GpuAnswer:
    """The answer as the contract's model; raises `pydantic.ValidationError` (a ValueError)
    when it is not what the contract accepts, `UnknownStage` for a stage it does not know."""
    return answer_model(stage).model_validate(body)


def describe(exc: ValidationError) -> str:
    """One line per field the answer got wrong: `is_ivr: Input should be a valid boolean
    (got 'false')`."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "answer"
        got = "" if error["type"] == "missing" else f" (got {error['input']!r:.60})"
        parts.append(f"{where}: {error['msg']}{got}")
    return "; ".join(parts)
