from pathlib import Path

from pydantic import Field

from shared.audio_uri import AudioUriSettings
from shared.groups import distributor_group
from shared.settings import CommonSettings

DEFAULT_RULES = Path(__file__).parent / "triage_rules.json"


class DistributorSettings(CommonSettings, AudioUriSettings):
    triage_rules_path: Path = DEFAULT_RULES
    distributor_commit_interval_s: float = Field(default=0.5, gt=0)

    @property
    def app_id(self) -> str:
        return distributor_group(self.topics)
