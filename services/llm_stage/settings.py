from pathlib import Path

from pydantic import Field, SecretStr

from shared.groups import llm_stage_group
from shared.http_transport import HttpTransportName
from shared.settings import CommonSettings, drain_timeout_field

PROMPTS = Path(__file__).parent / "prompts"


class LlmStageSettings(CommonSettings):
    llm_api_url: str = "http://127.0.0.1:8000/v1"
    llm_api_key: SecretStr = SecretStr("")
    llm_model: str = "cofi-call-analyst"
    llm_max_concurrency: int = Field(
        default=8, ge=1, description="Concurrent LLM requests per process"
    )
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_retry_max_attempts: int = Field(default=5, ge=1)
    llm_retry_base_delay_s: float = Field(default=0.5, ge=0)
    llm_retry_max_delay_s: float = Field(default=10.0, ge=0)
    llm_retry_budget_s: float = Field(default=300.0, gt=0)
    # Probes of a broken LLM API (auth, route, down) back off up to this long between two.
    llm_probe_max_delay_s: float = Field(default=10.0, gt=0)
    llm_prompts_dir: Path = PROMPTS
    drain_timeout_s: float = drain_timeout_field()
    llm_max_tokens: int = Field(
        default=1024,
        ge=1,
        description="`max_tokens` of each chat completion: the longest answer the LLM may give",
    )
    llm_malformed_max_attempts: int = Field(
        default=3,
        ge=1,
        description="Malformed answers (not the stage's JSON) allowed per file and LLM stage "
        "before it fails; counted within `LLM_RETRY_MAX_ATTEMPTS`",
    )
    http_transport: HttpTransportName = Field(
        default="aiohttp",
        description="Transport of the LLM API's httpx client: `aiohttp` (aiohttp's client, "
        "about a third of the CPU per request) or `httpx` (httpx's own)",
    )

    def group_id(self, stage: str) -> str:
        return llm_stage_group(self.topics, stage)
