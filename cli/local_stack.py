"""The whole pipeline as processes: simulator, distributor, GPU stages per host, LLM, tracker."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cli.processes import ProcessGroup, service_argv
from shared.provisioning import create_pipeline_topics
from shared.settings import CommonSettings

MODEL_HOST_SPARE_IP = "127.0.0.254"


@dataclass
class PipelineConfig:
    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "cofi"
    gpu_hosts: str = "127.0.0.2:4,127.0.0.3:4"
    database_url: str = "mysql+asyncmy://cofi:cofi@127.0.0.1:3306/cofi"
    llm_port: int = 8000
    control_port: int = 5099
    latency_scale: float = 1.0
    partitions: int = 4
    # "model_host": the GPU stages call the reference host's real models (model_host/, the
    # `model-host` extra); the simulator then serves only the LLM API.
    gpu_server: Literal["simulator", "model_host"] = "simulator"
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "TOPIC_PREFIX": self.topic_prefix,
            "GPU_HOSTS": self.gpu_hosts,
            "DATABASE_URL": self.database_url,
            "LLM_API_URL": f"http://127.0.0.1:{self.llm_port}/v1",
            "STAGE_PARTITIONS": str(self.partitions),
            "LOG_JSON": "true",
            **self.extra_env,
        }

    def settings(self) -> CommonSettings:
        """The settings the services get from `env()`, for this side's own clients (topics,
        uploads): the same security and topic plan, whatever `extra_env` adds."""
        given: dict[str, Any] = {k.lower(): v for k, v in self.env().items()}
        return CommonSettings(
            **{k: v for k, v in given.items() if k in CommonSettings.model_fields}
        )


async def create_topics(config: PipelineConfig) -> None:
    await create_pipeline_topics(config.settings())


def start_pipeline(config: PipelineConfig, log_dir: Path) -> ProcessGroup:
    """Start every service; returns once the simulator listens (consumers join on their own)."""
    group = ProcessGroup(log_dir=log_dir, env=config.env())
    settings = config.settings()
    hosts = settings.host_ips
    # With their capacities: a simulated host serves as many requests at once as the stages
    # believe it does.
    simulated = ",".join(f"{h.ip}:{h.capacity}" for h in settings.gpu_hosts)
    if config.gpu_server == "model_host":
        group.start("model-host", service_argv("model-host", "--hosts", ",".join(hosts)))
        # The simulator's own GPU servers listen on an address no stage calls.
        simulated = MODEL_HOST_SPARE_IP
    group.start(
        "simulator",
        service_argv(
            "simulator",
            "--hosts",
            simulated,
            "--llm-port",
            str(config.llm_port),
            "--control-port",
            str(config.control_port),
            "--latency-scale",
            str(config.latency_scale),
        ),
    )
    group.wait_for_log("simulator", "simulator ready", timeout_s=60)
    if config.gpu_server == "model_host":
        group.wait_for_log("model-host", "model host ready", timeout_s=180)
    group.start("tracker", service_argv("tracker"))
    group.start("distributor", service_argv("distributor"))
    for host in hosts:
        group.start(f"gpu-{host}", service_argv("gpu-stage", "--host", host))
    group.start("llm", service_argv("llm-stage"))
    return group
