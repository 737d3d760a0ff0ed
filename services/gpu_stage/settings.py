from pydantic import Field

from shared.audio_uri import AudioUriSettings
from shared.groups import gpu_stage_group
from shared.http_transport import HttpTransportName
from shared.settings import CommonSettings, drain_timeout_field


class GpuStageSettings(CommonSettings, AudioUriSettings):
    gpu_request_timeout_s: float = Field(default=30.0, gt=0)
    gpu_request_timeout_per_audio_s: float = Field(
        default=0.1,
        ge=0,
        description="Seconds added to a model request's timeout (and per attempt to the retry "
        "budget) per second of the call's audio: an hour-long call waits 30 + 360 s",
    )
    gpu_retry_max_attempts: int = Field(default=5, ge=1)
    gpu_retry_base_delay_s: float = Field(default=0.2, ge=0)
    gpu_retry_max_delay_s: float = Field(default=5.0, ge=0)
    gpu_retry_budget_s: float = Field(default=120.0, gt=0)
    gpu_host_failover_deadline_s: float = Field(
        default=300.0,
        gt=0,
        description="A host whose circuit stays open this long is dead: its files fail over "
        "to another host; one that every usable host has failed over waits on the last for "
        "another deadline before it goes round again (none fails while every host is down)",
    )
    # Probes of a down host back off up to this long between two.
    gpu_probe_max_delay_s: float = Field(default=10.0, gt=0)
    gpu_max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="In-flight requests per consumer; default: the host's capacity divided "
        "among `GPU_STAGE_REPLICAS`",
    )
    gpu_stage_replicas: int = Field(
        default=1,
        ge=1,
        description="Consumers (replicas) of one stage on one host: they share the host's "
        "capacity, each taking capacity / replicas (at least 1) at a time",
    )
    gpu_lookahead: int = Field(
        default=32,
        ge=0,
        description="Records a consumer fetches beyond its free slots, to start the longest "
        "call among them first: a batch then does not end on one host's hour-long call",
    )
    drain_timeout_s: float = drain_timeout_field()
    http_transport: HttpTransportName = Field(
        default="aiohttp",
        description="Transport of the model API's httpx client: `aiohttp` (aiohttp's client, "
        "about a third of the CPU per request) or `httpx` (httpx's own)",
    )

    def group_id(self, stage: str, host: str) -> str:
        return gpu_stage_group(self.topics, stage, host)

    def in_flight_per_consumer(self, host: str) -> int:
        """What one consumer may send a host at once: the replicas together never overload it."""
        if self.gpu_max_in_flight is not None:
            return self.gpu_max_in_flight
        return max(1, self.host(host).capacity // self.gpu_stage_replicas)
