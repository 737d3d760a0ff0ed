"""What every topic of the pipeline should look like, and how an existing one differs (pure).

`cofi topics` creates missing topics from this plan and reports drift on existing ones; it
never alters a topic silently (partitions and replication are an SRE's decision to change).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster describes it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


def retention_ms(hours: float) -> str:
    """Kafka's `retention.ms`; a negative number of hours keeps messages forever."""
    return "-1" if hours < 0 else str(int(hours * HOUR_MS))


def topic_configs(
    min_insync_replicas: int, retention_hours: float, compacted: bool
) -> dict[str, str]:
    return {
        "cleanup.policy": "compact" if compacted else "delete",
        "min.insync.replicas": str(min_insync_replicas),
        "retention.ms": retention_ms(retention_hours),
    }


def drift(wanted: TopicSpec, actual: TopicState) -> list[str]:
    """Every way `actual` differs from the plan, in words an operator can act on."""
    found = []
    if actual.partitions != wanted.partitions:
        found.append(
            f"{wanted.name}: {actual.partitions} partitions, plan says {wanted.partitions}"
        )
    if actual.replication_factor != wanted.replication_factor:
        found.append(
            f"{wanted.name}: replication factor {actual.replication_factor}, "
            f"plan says {wanted.replication_factor}"
        )
    for key, value in sorted(wanted.configs.items()):
        have = actual.configs.get(key)
        if have != value:
            found.append(f"{wanted.name}: {key}={have}, plan says {value}")
    return found
