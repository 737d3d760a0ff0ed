"""The stage groups' lag from the broker's committed offsets (shared/observability/group_lag.py)."""

import asyncio
from collections.abc import Awaitable, Callable

from aiokafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import CollectorRegistry

from shared.groups import gpu_host_group, stage_groups
from shared.observability.group_lag import GroupLagGauges, group_lag, group_lag_probe
from shared.pipeline import PIPELINE, input_topic
from shared.topics import Topics

TOPICS = Topics("cofi")
HOSTS = ["10.0.0.5", "10.0.0.6"]


def test_every_stage_has_a_group_per_host_that_commits_on_its_input() -> None:
    groups = stage_groups(TOPICS, HOSTS)
    inputs = sorted(t for topics in groups.values() for t in topics)
    expected = sorted(
        input_topic(row.name, TOPICS, host)
        for row in PIPELINE
        for host in (HOSTS if row.per_host else [None])
    )
    assert inputs == expected


def test_one_consumer_a_host_commits_every_gpu_stage_of_the_host_in_the_hosts_group() -> None:
    per_stage, per_host = stage_groups(TOPICS, HOSTS), stage_groups(TOPICS, HOSTS, "per_host")
    assert sorted(t for ts in per_host.values() for t in ts) == sorted(
        t for ts in per_stage.values() for t in ts
    )
    gpu_stages = [row.name for row in PIPELINE if row.runner == "gpu_stage"]
    for host in HOSTS:
        assert per_host[gpu_host_group(TOPICS, host)] == [
            input_topic(stage, TOPICS, host) for stage in gpu_stages
        ]
    assert len(per_stage) - len(per_host) == len(HOSTS) * (len(gpu_stages) - 1)


def test_lag_is_what_lies_past_the_committed_offsets_per_group_and_topic() -> None:
    stt = "cofi.stt.10.0.0.5"
    inputs = {"cofi-stt-10.0.0.5": [stt], "cofi-distributor": ["cofi.uploads"]}
    committed = {
        "cofi-stt-10.0.0.5": {TopicPartition(stt, 0): 10, TopicPartition(stt, 1): 4},
        # A topic that is not the group's input (the control topic) is left out.
        "cofi-distributor": {
            TopicPartition("cofi.uploads", 0): 7,
            TopicPartition("cofi.control", 0): 1,
        },
    }
    ends = {
        TopicPartition(stt, 0): 25,
        TopicPartition(stt, 1): 4,
        TopicPartition("cofi.uploads", 0): 7,
        TopicPartition("cofi.control", 0): 9,
    }
    lag, total = group_lag(committed, ends, inputs)
    assert lag == {("cofi-stt-10.0.0.5", stt): 15, ("cofi-distributor", "cofi.uploads"): 0}
    assert total == {("cofi-stt-10.0.0.5", stt): 14, ("cofi-distributor", "cofi.uploads"): 7}


class _Broker:
    """What the probe asks of the admin client and the tracker's consumer."""

    def __init__(self) -> None:
        self.asked: list[list[TopicPartition]] = []

    async def list_consumer_group_offsets(
        self, group_id: str
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        if group_id != "cofi-llm1":
            return {}
        return {TopicPartition("cofi.llm1", 0): OffsetAndMetadata(3, "")}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.asked.append(partitions)
        return {tp: 8 for tp in partitions}


async def _call(probe: Callable[[], Awaitable[None]]) -> None:
    await probe()


def test_the_probe_sets_the_gauges_and_waits_until_the_consumer_joined() -> None:
    registry = CollectorRegistry()
    broker = _Broker()
    joined = False
    groups = stage_groups(TOPICS, HOSTS)
    probe = group_lag_probe(broker, broker, groups, GroupLagGauges(registry), lambda: joined)
    asyncio.run(_call(probe))
    assert broker.asked == []
    joined = True
    asyncio.run(_call(probe))
    labels = {"group": "cofi-llm1", "topic": "cofi.llm1"}
    assert registry.get_sample_value("cofi_group_lag", labels) == 5
    assert registry.get_sample_value("cofi_group_committed_offset", labels) == 3
