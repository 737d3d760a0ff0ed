"""Settings common to every service, read from the environment (pydantic-settings).

Each service subclasses `CommonSettings` with its own knobs; nothing is read at import time.
Any setting can come from a file instead: `<NAME>_FILE=/run/secrets/x` reads the value of
`<NAME>` from that file (Docker secrets), so secrets never sit in the environment or in
docker-compose.yml. Setting both `<NAME>` and `<NAME>_FILE` is an error.
"""

import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from shared.groups import GpuConsumers
from shared.kafka_connection import KafkaConnection, SaslMechanism, SecurityProtocol
from shared.stages import GpuStage
from shared.topic_plan import TopicSpec, topic_configs
from shared.topics import Topics

# The tracker's database when DATABASE_URL is unset: a newcomer's first run needs no database
# server. Here because the tracker writes it and the dashboard reads it.
EMBEDDED_DATABASE_URL = "sqlite+aiosqlite:///./cofi.db"


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
            if not rest[0].isdigit():
                raise ValueError(f"GPU host {item!r}: the capacity {rest[0]!r} is not a number")
            host["capacity"] = int(rest[0])
        if len(rest) > 1:
            if rest[1] != "down":
                raise ValueError(f"GPU host {item!r}: the third field may only be 'down'")
            host["down"] = True
        hosts.append(host)
    return hosts


FILE_SUFFIX = "_FILE"


class FileVariables(PydanticBaseSettingsSource):
    """`<NAME>_FILE` variables: the value of setting NAME is the content of that file (one
    trailing newline dropped), as the official database images read their secrets."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        environ = {k.upper(): v for k, v in os.environ.items()}
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            variable = name.upper()
            path = environ.get(variable + FILE_SUFFIX)
            if not path:
                continue
            if variable in environ:
                raise SettingsError(f"set {variable} or {variable}{FILE_SUFFIX}, not both")
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise SettingsError(
                    f"{variable}{FILE_SUFFIX}={path}: cannot read it ({exc.strerror or exc})"
                ) from exc
            values[name] = text.removesuffix("\n").removesuffix("\r")
        return values


def url_with_password(url: str, password: SecretStr) -> str:
    """`url` with `password` as its password; unchanged when the password is empty."""
    secret = password.get_secret_value()
    if not secret:
        return url
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:  # no user in the URL: nothing to give the password to
        return url
    user = userinfo.split(":", 1)[0]
    # Percent-encoded, as SQLAlchemy's URL parser decodes it.
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(secret, safe='')}@{hostport}"))


def drain_timeout_field() -> Any:
    """DRAIN_TIMEOUT_S, read by every stage that runs a StageRunner."""
    return Field(
        default=30.0,
        gt=0,
        description="On SIGTERM, how long in-flight records may finish before the consumer "
        "commits and stops (compose: keep `stop_grace_period` longer)",
    )


class FileAwareSettings(BaseSettings):
    """Settings read from the environment, each also from a file (`<NAME>_FILE`)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            FileVariables(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )


class CommonSettings(FileAwareSettings):
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = Field(
        default="SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*"
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = Field(
        default=None, description="CA bundle that signed the brokers' certificates (unset: system)"
    )
    kafka_ssl_certfile: str | None = Field(default=None, description="client certificate (mTLS)")
    kafka_ssl_keyfile: str | None = Field(default=None, description="client key (mTLS)")
    kafka_ssl_check_hostname: bool = True
    # Defaults suit a 3-broker cluster; the local single broker overrides them (Makefile).
    topic_replication_factor: int = Field(
        default=3, ge=1, description="Replication factor of the topics `cofi topics` creates"
    )
    topic_min_insync_replicas: int = Field(
        default=2, ge=1, description="`min.insync.replicas` of every topic (acks=all waits on it)"
    )
    topic_retention_hours: float = Field(
        default=336,
        description="Retention of the uploads and stage topics; bounds a rebuild of the tables "
        "and `cofi retry` (-1: forever)",
    )
    failed_topic_retention_hours: float = Field(
        default=720, description="Retention of the dead-letter topic (-1: forever)"
    )
    control_topic_retention_hours: float = Field(
        default=-1, description="Retention of the compacted control topic (-1: forever)"
    )
    topic_prefix: str = Field(default="cofi", pattern=r"^[A-Za-z0-9._-]+$")
    gpu_hosts: Annotated[list[GpuHost], NoDecode] = Field(
        default_factory=lambda: [GpuHost(ip="127.0.0.2"), GpuHost(ip="127.0.0.3")]
    )
    gpu_stage_consumers: GpuConsumers = Field(
        default="per_host",
        description="How a GPU-stage process reads a host's stages: `per_host`, one consumer "
        "over the host's stages in the host's group (a process that runs all of a host's "
        "stages shares its fetches, heartbeats and metadata; on the first switch each stage "
        "resumes from its own group's commits, so nothing is redone); `per_stage`, a consumer "
        "and group per stage and host, for deployments that run and scale one stage per "
        "process (the compose file, the Helm chart; switching back redoes what ran meanwhile). "
        "The tracker reads it to watch the right groups",
    )
    event_payload_max_bytes: int = Field(
        default=16_384,
        ge=1024,
        description="An attempt's request or response larger than this (JSON bytes) travels "
        "as a marker with its size and digest, so events stay under Kafka's message limit",
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

    offset_metadata_max_bytes: int = Field(
        default=4096,
        ge=64,
        le=1024 * 1024,
        description=(
            "The broker's offset.metadata.max.bytes: GPU and LLM stages put a partition's "
            "finished offsets above its committed one in the commit's metadata, and pause "
            "a partition whose finished offsets would not fit"
        ),
    )

    consumer_idle_fetch_wait_ms: int = Field(
        default=2_000,
        ge=0,
        le=30_000,
        description=(
            "A GPU or LLM stage consumer with nothing fetched or held for 2 s asks the broker "
            "again this often instead of its short poll (a record still ends the wait at "
            "once); 0 keeps the short poll"
        ),
    )

    consumer_caught_up_fetch_wait_ms: int = Field(
        default=2_000,
        ge=0,
        le=30_000,
        description=(
            "A GPU or LLM stage consumer with records in hand asks the broker again this often "
            "(a record still ends the wait at once); it keeps its short poll only while records "
            "wait on the broker that its look-ahead will run out of first"
        ),
    )

    control_fetch_wait_ms: int = Field(
        default=5_000,
        ge=100,
        le=30_000,
        description=(
            "How often each stage process's reader of the control topic asks the broker again "
            "while no cancel or drain comes (a record ends the wait at once)"
        ),
    )

    kafka_consumer_metadata_max_age_ms: int = Field(
        default=30_000,
        ge=1_000,
        le=300_000,
        description=(
            "How often a consumer refreshes the cluster's metadata unasked (a partition whose "
            "leader moved refreshes it at once; a topic created after the consumer started "
            "is seen at the next refresh)"
        ),
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

    @model_validator(mode="after")
    def _consistent(self) -> "CommonSettings":
        self.kafka  # noqa: B018 - SASL without credentials fails at start, not at first use
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"TOPIC_MIN_INSYNC_REPLICAS={self.topic_min_insync_replicas} exceeds "
                f"TOPIC_REPLICATION_FACTOR={self.topic_replication_factor}: no write could succeed"
            )
        return self

    @property
    def kafka(self) -> KafkaConnection:
        return KafkaConnection(
            bootstrap_servers=self.kafka_bootstrap_servers,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            ssl_check_hostname=self.kafka_ssl_check_hostname,
            consumer_metadata_max_age_ms=self.kafka_consumer_metadata_max_age_ms,
        )

    def topic_plan(self) -> list[TopicSpec]:
        """Every topic for these GPU hosts, with its partitions, replication and configs."""
        topics = self.topics
        retention = {
            topics.failed: self.failed_topic_retention_hours,
            topics.control: self.control_topic_retention_hours,
        }
        return [
            TopicSpec(
                name,
                self.stage_partitions,
                self.topic_replication_factor,
                topic_configs(
                    self.topic_min_insync_replicas,
                    retention.get(name, self.topic_retention_hours),
                    compacted=name == topics.control,
                ),
            )
            for name in topics.all_topics(self.host_ips)
        ]

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
