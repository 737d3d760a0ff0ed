"""Every consumer group's name, in one place: the services join them, the ACL plan grants them."""

from shared.topics import Topics


def distributor_group(topics: Topics) -> str:
    return f"{topics.prefix}-distributor"


def gpu_stage_group(topics: Topics, stage: str, host: str) -> str:
    """One group per (stage, host): replicas share the host's partitions."""
    return f"{topics.prefix}-{stage}-{host}"


def llm_stage_group(topics: Topics, stage: str) -> str:
    return f"{topics.prefix}-{stage}"


def tracker_group(topics: Topics) -> str:
    return f"{topics.prefix}-tracker"
