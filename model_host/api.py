"""The GPU model API's messages, written from docs/gpu-model-api.yaml (the host's own copy)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Stage = Literal["denoise", "ivr", "lid", "stt"]
STAGES: tuple[Stage, ...] = ("denoise", "ivr", "lid", "stt")


class StageInputs(BaseModel):
    model_config = ConfigDict(extra="ignore")
    language: str | None = None


class ModelRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    batch_id: str = Field(min_length=1, max_length=64)
    file_name: str = Field(min_length=1)
    audio_uri: str = Field(min_length=1)
    inputs: StageInputs = Field(default_factory=StageInputs)

    @field_validator("inputs", mode="before")
    @classmethod
    def _null_inputs(cls, value: Any) -> Any:
        return {} if value is None else value


class DenoiseAnswer(BaseModel):
    denoised_uri: str
    duration_s: float = Field(ge=0)
    sample_rate: int
    model: str


class IvrAnswer(BaseModel):
    is_ivr: bool
    reasons: list[str]
    dtmf: str
    speech_s: float
    window_s: float
    phrases: list[str]
    head_transcript: str


class LidAnswer(BaseModel):
    language: str = Field(min_length=1)
    confidence: float
    model: str


class SttAnswer(BaseModel):
    transcript: str
    language: str
    audio_s: float
    model: str


class ErrorAnswer(BaseModel):
    error: str
