"""What the broker-loss scenarios ask the 3-node cluster: who is the active controller, which
node leads most of a run's partitions, and whether every partition is fully replicated again.

The active controller is the leader of the metadata quorum (`__cluster_metadata`), read with
the DescribeQuorum API (KIP-595), the one `kafka-metadata-quorum.sh` uses. kafka-tools is not
among our jars and aiokafka has no DescribeQuorum, so its request and response (version 0) are
declared below on aiokafka's own protocol types; any broker forwards the request to the active
controller, which answers with its own view (leader, epoch, voters' log end offsets). The
`controller_id` of a metadata response is no answer: in KRaft it names a random live broker.
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

METADATA_TOPIC = "__cluster_metadata"
_REPLICA = (("replica_id", Int32), ("log_end_offset", Int64), ("tags", TaggedFields))


class DescribeQuorumResponse_v0(Response):
    API_KEY = 55
    API_VERSION = 0
    SCHEMA = Schema(
        ("error_code", Int16),
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("error_code", Int16),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("high_watermark", Int64),
                        ("current_voters", CompactArray(*_REPLICA)),
                        ("observers", CompactArray(*_REPLICA)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 55
    API_VERSION = 0
    RESPONSE_TYPE = DescribeQuorumResponse_v0
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                ("partitions", CompactArray(("partition_index", Int32), ("tags", TaggedFields))),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest(Request[DescribeQuorumRequest_v0]):
    API_KEY = 55

    def build(self, request_struct_class: type[DescribeQuorumRequest_v0]) -> Any:
        return request_struct_class([(METADATA_TOPIC, [(0, {})], {})], {})


@dataclass(frozen=True)
class Quorum:
    leader: int  # the active controller's node id
    epoch: int
    high_watermark: int
    voters: dict[int, int]  # voter node id -> its log end offset


def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)


async def describe_quorum(bootstrap: str, timeout_s: float = 60.0) -> Quorum:
    """The metadata quorum as the active controller reports it; retries (a controller that was
    just killed leaves the quorum leaderless until the next election)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        admin = _admin(bootstrap)
        try:
            await admin.start()
            brokers = (await admin.describe_cluster())["brokers"]
            for broker in brokers:
                try:
                    response = await admin._client.send(broker["node_id"], DescribeQuorumRequest())
                except (TimeoutError, KafkaError, OSError) as exc:
                    last = f"node {broker['node_id']}: {exc!r}"
                    continue
                quorum = _parse(response.to_object())
                if quorum is not None:
                    return quorum
                last = f"node {broker['node_id']}: {response.to_object()}"
        except (TimeoutError, KafkaError, OSError) as exc:
            last = repr(exc)
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise TimeoutError(f"no metadata quorum leader in {timeout_s:.0f}s: {last}")


def _parse(answer: dict[str, Any]) -> Quorum | None:
    if answer["error_code"]:
        return None
    for topic in answer["topics"]:
        for p in topic["partitions"]:
            if (
                topic["topic_name"] == METADATA_TOPIC
                and not p["error_code"]
                and p["leader_id"] >= 0
            ):
                voters = {v["replica_id"]: v["log_end_offset"] for v in p["current_voters"]}
                return Quorum(p["leader_id"], p["leader_epoch"], p["high_watermark"], voters)
    return None


async def partitions(bootstrap: str, topics: list[str]) -> list[dict[str, Any]]:
    """Every partition of `topics` (with `topic`): leader, replicas, isr."""
    admin = _admin(bootstrap)
    try:
        await admin.start()
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [{**p, "topic": t["topic"]} for t in described for p in t["partitions"]]


async def leaders(bootstrap: str, topics: list[str]) -> Counter[int]:
    """How many of `topics`' partitions each node leads."""
    return Counter(p["leader"] for p in await partitions(bootstrap, topics) if p["leader"] >= 0)


async def wait_fully_replicated(
    bootstrap: str, topics: list[str], replicas: int, timeout_s: float = 120.0
) -> float:
    """Wait until every partition of `topics` has a leader and `replicas` in-sync replicas (a
    restarted broker caught up), as an operator waits between the steps of a rolling restart;
    returns the seconds it took."""
    started = time.monotonic()
    behind: list[str] = []
    while time.monotonic() - started < timeout_s:
        try:
            behind = [
                f"{p['topic']}-{p['partition']} isr {p['isr']}"
                for p in await partitions(bootstrap, topics)
                if p["leader"] < 0 or len(p["isr"]) < replicas
            ]
        except (TimeoutError, KafkaError, OSError) as exc:
            behind = [repr(exc)]
        if not behind:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise TimeoutError(f"partitions not fully replicated after {timeout_s:.0f}s: {behind[:5]}")
