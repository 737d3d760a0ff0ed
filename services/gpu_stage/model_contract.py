"""The model API every GPU host serves, as pydantic models: what cofi sends, what it reads back.

`work.request_for` builds the request and `work.context_after` reads the response;
`tests/unit/test_contracts.py` checks both against these models, and `cofi contracts`
renders them (with `shared.retry.classify_status`) into docs/gpu-model-api.yaml and .md.
"""

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from shared.stages import GpuStage


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


class _Response(BaseModel):
    # Hosts may add fields (scores, model versions): cofi keeps them in processing_logs.
    model_config = ConfigDict(extra="allow")


class DenoiseResponse(_Response):
    """Denoise: where the cleaned audio is, and how long the call lasts."""

    denoised_uri: str = Field(description="URI of the denoised audio; later stages read it")
    duration_s: float = Field(ge=0, description="The call's duration in seconds (triage reads it)")


class IvrResponse(_Response):
    """IVR detection: whether the call is an automated menu rather than a conversation."""

    is_ivr: bool = Field(description="True: an IVR call (triage may skip it)")


class LidResponse(_Response):
    """Language identification."""

    language: str = Field(min_length=1, description="Language code (triage rules read it)")


class SttResponse(_Response):
    """Speech to text."""

    transcript: str = Field(description="The call's transcript (the LLM stages read it)")


class ErrorResponse(BaseModel):
    """Any non-200 answer; cofi records the status and up to 500 characters of the body."""

    error: str = Field(description="What went wrong, for people reading processing_logs")


RESPONSES: Final[dict[GpuStage, type[_Response]]] = {
    "denoise": DenoiseResponse,
    "ivr": IvrResponse,
    "lid": LidResponse,
    "stt": SttResponse,
}
