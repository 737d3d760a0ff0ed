"""Every consumer group's name, in one place: the services join them, the ACL plan grants them,
the tracker watches their committed offsets (shared/observability/group_lag.py)."""

from typing import Literal

from shared.pipeline import PIPELINE, StageSpec, input_topic
from shared.topics import Topics

# How a GPU-stage process consumes a host's stages: a consumer (and group) per stage, or one
# consumer over them all (`shared/runtime/shared_consumer.py`), in the host's group.
GpuConsumers = Literal["per_stage", "per_host"]


def distributor_group(topics: Topics) -> str:
    return f"{topics.prefix}-distributor"


def gpu_stage_group(topics: Topics, stage: str, host: str) -> str:
    """One group per (stage, host): replicas share the host's partitions."""
    return f"{topics.prefix}-{stage}-{host}"


def gpu_host_group(topics: Topics, host: str) -> str:
    """One group per host, over its stages: one consumer per process for them all."""
    return f"{topics.prefix}-gpu_stage-{host}"


def llm_stage_group(topics: Topics, stage: str) -> str:
    return f"{topics.prefix}-{stage}"


def tracker_group(topics: Topics) -> str:
    return f"{topics.prefix}-tracker"


def stage_group(
    row: StageSpec, topics: Topics, host: str, gpu_consumers: GpuConsumers = "per_stage"
) -> str:
    """The group whose consumers run the stage (`host`: the GPU host, for a per-host stage)."""
    if row.runner == "distributor":
        return distributor_group(topics)
    if row.runner == "gpu_stage":
        if gpu_consumers == "per_host":
            return gpu_host_group(topics, host)
        return gpu_stage_group(topics, row.name, host)
    return llm_stage_group(topics, row.name)


def stage_groups(
    topics: Topics, hosts: list[str], gpu_consumers: GpuConsumers = "per_stage"
) -> dict[str, list[str]]:
    """Every stage's consumer group in the deployment and the input topics it commits on."""
    groups: dict[str, list[str]] = {}
    for row in PIPELINE:
        for host in hosts if row.per_host else [""]:
            group = stage_group(row, topics, host, gpu_consumers)
            groups.setdefault(group, []).append(input_topic(row.name, topics, host or None))
    return groups
