"""Settings common to every service, read from the environment (pydantic-settings).

Each service subclasses `CommonSettings` with its own knobs; nothing is read at import time.
"""

from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.stages import GpuStage
from shared.topics import Topics


class GpuHost(BaseModel):
    """A GPU host: its address, how many requests it serves at once, and whether it is drained."""

    ip: str
    capacity: int = Field(default=4, ge=1)
    down: bool = False


def parse_gpu_hosts(value: Any) -> Any:
    """Accept `"127.0.0.2:4,127.0.0.3:4:down"` as well as a list of mappings."""
    if not isinstance(value, str):
        return value
    hosts = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        ip, *rest = item.split(":")
        host: dict[str, Any] = {"ip": ip}
        if rest and rest[0]:
            host["capacity"] = int(rest[0])
        if len(rest) > 1:
            if rest[1] != "down":
                raise ValueError(f"GPU host {item!r}: the third field may only be 'down'")
            host["down"] = True
        hosts.append(host)
    return hosts


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="cofi", pattern=r"^[A-Za-z0-9._-]+$")
    gpu_hosts: Annotated[list[GpuHost], NoDecode] = Field(
        default_factory=lambda: [GpuHost(ip="127.0.0.2"), GpuHost(ip="127.0.0.3")]
    )
    stage_partitions: int = Field(default=4, ge=1, description="Partitions of each stage topic")
    denoise_port: int = 5010
    ivr_port: int = 5011
    lid_port: int = 5012
    stt_port: int = 5013
    log_level: str = "INFO"
    log_json: bool = True
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of /metrics, /healthz and /readyz; unset or 0 serves nothing",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the metrics endpoint binds (0.0.0.0: all)"
    )
    metrics_refresh_s: float = Field(
        default=5.0,
        gt=0,
        description="How often consumer lag and readiness (broker, database) are refreshed",
    )

    _parse_hosts = field_validator("gpu_hosts", mode="before")(parse_gpu_hosts)

    @field_validator("gpu_hosts")
    @classmethod
    def _hosts_unique(cls, hosts: list[GpuHost]) -> list[GpuHost]:
        ips = [h.ip for h in hosts]
        if len(set(ips)) != len(ips):
            raise ValueError(f"GPU_HOSTS lists a host twice: {ips}")
        if not hosts:
            raise ValueError("GPU_HOSTS must name at least one host")
        return hosts

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def host_ips(self) -> list[str]:
        return [h.ip for h in self.gpu_hosts]

    def stage_port(self, stage: GpuStage) -> int:
        ports: dict[GpuStage, int] = {
            "denoise": self.denoise_port,
            "ivr": self.ivr_port,
            "lid": self.lid_port,
            "stt": self.stt_port,
        }
        return ports[stage]

    def host(self, ip: str) -> GpuHost:
        for h in self.gpu_hosts:
            if h.ip == ip:
                return h
        raise KeyError(f"GPU host {ip} is not in GPU_HOSTS ({self.host_ips})")
