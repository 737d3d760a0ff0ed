from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from services.distributor.audio_uri import AudioUriPolicy, check_root
from shared.settings import CommonSettings

DEFAULT_RULES = Path(__file__).parent / "triage_rules.json"


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class DistributorSettings(CommonSettings):
    triage_rules_path: Path = DEFAULT_RULES
    distributor_commit_interval_s: float = Field(default=0.5, gt=0)
    audio_uri_allowed_schemes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["file"],
        description="URI schemes an upload's `audio_uri` may use, comma-separated "
        "(e.g. `file,s3`); any other fails the file at distribution, before a GPU host sees it",
    )
    audio_uri_allowed_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/"],
        description="Where audio may live, comma-separated: absolute paths for `file:` URIs "
        "(e.g. `/data/audio`), URL prefixes for other schemes (e.g. `s3://calls/`); narrow "
        "`/` to the upload system's folders in production",
    )

    _split = field_validator("audio_uri_allowed_schemes", "audio_uri_allowed_roots", mode="before")(
        _comma_list
    )

    @field_validator("audio_uri_allowed_schemes")
    @classmethod
    def _schemes(cls, schemes: list[str]) -> list[str]:
        if not schemes:
            raise ValueError("AUDIO_URI_ALLOWED_SCHEMES must name at least one scheme")
        return [s.lower() for s in schemes]

    @field_validator("audio_uri_allowed_roots")
    @classmethod
    def _roots(cls, roots: list[str]) -> list[str]:
        if not roots:
            raise ValueError("AUDIO_URI_ALLOWED_ROOTS must name at least one root")
        return [check_root(r) for r in roots]

    @property
    def audio_uri_policy(self) -> AudioUriPolicy:
        return AudioUriPolicy.of(self.audio_uri_allowed_schemes, self.audio_uri_allowed_roots)

    @property
    def app_id(self) -> str:
        return f"{self.topic_prefix}-distributor"
