"""Configuration of the simulator: defaults, knob models, and CLI/env/file merging.

Precedence is defaults < JSON config file < environment < command line, so a compose file can set
env while a developer still overrides one value on the command line.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

Stage = Literal["denoise", "ivr", "lid", "stt"]
STAGES: tuple[Stage, ...] = ("denoise", "ivr", "lid", "stt")

DEFAULT_PORTS: dict[Stage, int] = {"denoise": 5010, "ivr": 5011, "lid": 5012, "stt": 5013}
# Same env names the product uses, so one .env file configures both sides.
PORT_ENV: dict[Stage, str] = {
    "denoise": "DENOISE_PORT",
    "ivr": "IVR_PORT",
    "lid": "LID_PORT",
    "stt": "STT_PORT",
}
# A stage's model time for one file: latency_s + rtf x (seconds of call audio it reads, at most
# window_s), then x latency_scale. Figures for one consumer GPU host, with their sources in
# simulator/README.md:
# - denoise: DeepFilterNet2, real-time factor 0.04 (Schroeter et al. 2022, arXiv:2205.05474);
# - ivr: a Silero-VAD-class detector over the call's first minute (IVR menus play first),
#   under 1 ms per 30 ms chunk on one CPU thread (snakers4/silero-vad README): RTF 1/30;
# - lid: Whisper's language detection reads one 30-second window (openai/whisper README),
#   at faster-whisper's speed;
# - stt: faster-whisper large-v2, fp16, batch_size 8: 13 minutes of audio in 17 s on one
#   RTX 3070 Ti (SYSTRAN/faster-whisper README, v1.1.0): ~46x real time, RTF 1/46.
DEFAULT_LATENCY_S: dict[Stage, float] = {"denoise": 0.050, "ivr": 0.020, "lid": 0.050, "stt": 0.100}
DEFAULT_RTF: dict[Stage, float] = {"denoise": 0.04, "ivr": 1 / 30, "lid": 1 / 46, "stt": 1 / 46}
DEFAULT_WINDOW_S: dict[Stage, float | None] = {
    "denoise": None,
    "ivr": 60.0,
    "lid": 30.0,
    "stt": None,
}
DEFAULT_LANGUAGES: dict[str, float] = {"en": 0.85, "hi": 0.07, "es": 0.04, "xx": 0.04}
DEFAULT_CAPACITY = 4

Rate = float  # documented alias: a probability in [0, 1]
_T = TypeVar("_T")


class GpuKnobs(BaseModel):
    """Runtime behaviour of one (host, stage) model server; mutated in place by /faults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency_s: float = Field(ge=0)
    rtf: float = Field(default=0.0, ge=0)
    window_s: float | None = Field(default=None, gt=0)
    jitter_s: float = Field(default=0.0, ge=0)
    latency_scale: float = Field(default=1.0, ge=0)
    capacity: int = Field(default=DEFAULT_CAPACITY, ge=1)
    queue_limit: int = Field(default=64, ge=0)
    error_rate: Rate = Field(default=0.0, ge=0, le=1)
    timeout_rate: Rate = Field(default=0.0, ge=0, le=1)
    hang_s: float = Field(default=30.0, ge=0)
    down: bool = False
    # Answers a buggy model server gives: values of the wrong types (a 400-digit number where
    # a float belongs, strings for numbers), or an STT transcript over 1 MiB.
    wrong_types_rate: Rate = Field(default=0.0, ge=0, le=1)
    oversize_rate: Rate = Field(default=0.0, ge=0, le=1)


class GpuKnobsUpdate(BaseModel):
    """A partial GpuKnobs: only the fields that were sent are applied."""

    model_config = ConfigDict(extra="forbid")

    latency_s: float | None = Field(default=None, ge=0)
    rtf: float | None = Field(default=None, ge=0)
    jitter_s: float | None = Field(default=None, ge=0)
    latency_scale: float | None = Field(default=None, ge=0)
    capacity: int | None = Field(default=None, ge=1)
    queue_limit: int | None = Field(default=None, ge=0)
    error_rate: Rate | None = Field(default=None, ge=0, le=1)
    timeout_rate: Rate | None = Field(default=None, ge=0, le=1)
    hang_s: float | None = Field(default=None, ge=0)
    down: bool | None = None
    wrong_types_rate: Rate | None = Field(default=None, ge=0, le=1)
    oversize_rate: Rate | None = Field(default=None, ge=0, le=1)


class LlmKnobs(BaseModel):
    """Runtime behaviour of the LLM endpoint; mutated in place by /faults {"llm": {...}}."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency_s: float = Field(default=0.050, ge=0)
    jitter_s: float = Field(default=0.0, ge=0)
    # None means "inherit the global latency_scale" (resolved when the simulator starts).
    latency_scale: float | None = Field(default=None, ge=0)
    error_rate: Rate = Field(default=0.0, ge=0, le=1)
    rate_limit_rate: Rate = Field(default=0.0, ge=0, le=1)
    malformed_rate: Rate = Field(default=0.0, ge=0, le=1)
    retry_after_s: int = Field(default=1, ge=0)
    down: bool = False
    # Answer every request 401, as an API does to a revoked or expired key.
    unauthorized: bool = False


class LlmKnobsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_s: float | None = Field(default=None, ge=0)
    jitter_s: float | None = Field(default=None, ge=0)
    latency_scale: float | None = Field(default=None, ge=0)
    error_rate: Rate | None = Field(default=None, ge=0, le=1)
    rate_limit_rate: Rate | None = Field(default=None, ge=0, le=1)
    malformed_rate: Rate | None = Field(default=None, ge=0, le=1)
    retry_after_s: int | None = Field(default=None, ge=0)
    down: bool | None = None
    unauthorized: bool | None = None


class HostConfig(BaseModel):
    """One simulated GPU host; optional fields override the global knobs for this host only."""

    model_config = ConfigDict(extra="forbid")

    address: str
    capacity: int = Field(default=DEFAULT_CAPACITY, ge=1)
    latency_scale: float | None = Field(default=None, ge=0)
    error_rate: Rate | None = Field(default=None, ge=0, le=1)
    timeout_rate: Rate | None = Field(default=None, ge=0, le=1)
    queue_limit: int | None = Field(default=None, ge=0)
    down: bool = False

    @field_validator("address")
    @classmethod
    def _ip(cls, value: str) -> str:
        # Each host is a loopback *address* (not a name) so it can be bound directly.
        ipaddress.ip_address(value)
        return value


class SimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hosts: list[HostConfig] = Field(
        default_factory=lambda: [HostConfig(address="127.0.0.2"), HostConfig(address="127.0.0.3")],
        min_length=1,
    )
    ports: dict[Stage, int] = Field(default_factory=lambda: dict(DEFAULT_PORTS))
    latency_s: dict[Stage, float] = Field(default_factory=lambda: dict(DEFAULT_LATENCY_S))
    rtf: dict[Stage, float] = Field(default_factory=lambda: dict(DEFAULT_RTF))
    window_s: dict[Stage, float | None] = Field(default_factory=lambda: dict(DEFAULT_WINDOW_S))
    latency_scale: float = Field(default=1.0, ge=0)
    jitter_s: float = Field(default=0.0, ge=0)
    queue_limit: int = Field(default=64, ge=0)
    error_rate: Rate = Field(default=0.0, ge=0, le=1)
    timeout_rate: Rate = Field(default=0.0, ge=0, le=1)
    hang_s: float = Field(default=30.0, ge=0)
    ivr_rate: Rate = Field(default=0.05, ge=0, le=1)
    languages: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_LANGUAGES))
    llm_host: str = "127.0.0.1"
    llm_port: int = Field(default=8000, ge=0, le=65535)
    llm: LlmKnobs = Field(default_factory=LlmKnobs)
    control_host: str = "127.0.0.1"
    control_port: int = Field(default=5099, ge=0, le=65535)
    # Seeds the fault/jitter dice (not the outputs, which always hash the file name).
    seed: int | None = None

    @field_validator("ports", "latency_s", "rtf", "window_s", mode="before")
    @classmethod
    def _merge_stage_defaults(cls, value: Any, info: Any) -> Any:
        # A config file may name only the stages it changes; the rest keep their defaults.
        tables: dict[str, Mapping[Any, Any]] = {
            "ports": DEFAULT_PORTS,
            "latency_s": DEFAULT_LATENCY_S,
            "rtf": DEFAULT_RTF,
            "window_s": DEFAULT_WINDOW_S,
        }
        defaults = tables[info.field_name]
        if isinstance(value, Mapping):
            return {**defaults, **value}
        return value

    @field_validator("languages")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("languages needs non-negative weights with a positive sum")
        return value

    def host(self, address: str) -> HostConfig:
        for host in self.hosts:
            if host.address == address:
                return host
        raise KeyError(address)

    def gpu_knobs(self, host: HostConfig, stage: Stage) -> GpuKnobs:
        """Initial knobs of one (host, stage) server: global values, then the host's overrides."""
        return GpuKnobs(
            latency_s=self.latency_s[stage],
            rtf=self.rtf[stage],
            window_s=self.window_s[stage],
            jitter_s=self.jitter_s,
            latency_scale=_first(host.latency_scale, self.latency_scale),
            capacity=host.capacity,
            queue_limit=_first(host.queue_limit, self.queue_limit),
            error_rate=_first(host.error_rate, self.error_rate),
            timeout_rate=_first(host.timeout_rate, self.timeout_rate),
            hang_s=self.hang_s,
            down=host.down,
        )

    def llm_knobs(self) -> LlmKnobs:
        knobs = self.llm.model_copy()
        if knobs.latency_scale is None:
            knobs.latency_scale = self.latency_scale
        return knobs


def _first(override: _T | None, default: _T) -> _T:
    return default if override is None else override


def parse_hosts(spec: str, default_capacity: int = DEFAULT_CAPACITY) -> list[HostConfig]:
    """Parse `127.0.0.2,127.0.0.3` or `127.0.0.2:4,127.0.0.3:2` (the product's GPU_HOSTS form)."""
    hosts: list[HostConfig] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        address, sep, capacity = item.partition(":")
        if sep and not capacity.strip().isdigit():
            raise ValueError(f"bad host spec {item!r}: capacity must be an integer")
        hosts.append(
            HostConfig(
                address=address.strip(),
                capacity=int(capacity) if sep else default_capacity,
            )
        )
    if not hosts:
        raise ValueError(f"no hosts in {spec!r}")
    return hosts


def load_config(
    cli: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> SimConfig:
    """Build the config from an optional JSON file, then env, then CLI values (None = unset)."""
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    env = os.environ if env is None else env

    data: dict[str, Any] = {}
    config_path = cli.pop("config", None) or env.get("SIM_CONFIG")
    if config_path:
        data = json.loads(Path(config_path).read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{config_path}: the config file must hold a JSON object")

    # --hosts wins outright: GPU_HOSTS may name hosts this process does not serve (compose).
    hosts_spec = None if "hosts" in cli else (env.get("SIM_HOSTS") or env.get("GPU_HOSTS"))
    if hosts_spec:
        data["hosts"] = [h.model_dump() for h in parse_hosts(hosts_spec)]
    ports = dict(data.get("ports", {}))
    for stage, name in PORT_ENV.items():
        if env.get(name):
            ports[stage] = int(env[name])
    if ports:
        data["ports"] = ports
    for name, key, cast in _ENV_SCALARS:
        if env.get(name):
            data[key] = cast(env[name])

    if "hosts" in cli:
        data["hosts"] = [h.model_dump() for h in parse_hosts(cli.pop("hosts"))]
    data.update(cli)
    return SimConfig.model_validate(data)


_ENV_SCALARS: tuple[tuple[str, str, Any], ...] = (
    ("SIM_LLM_PORT", "llm_port", int),
    ("SIM_CONTROL_PORT", "control_port", int),
    ("SIM_LATENCY_SCALE", "latency_scale", float),
    ("SIM_ERROR_RATE", "error_rate", float),
    ("SIM_TIMEOUT_RATE", "timeout_rate", float),
    ("IVR_RATE", "ivr_rate", float),
    ("SIM_SEED", "seed", int),
)
