"""Kafka clients configured the way cofi needs them (acks=all, idempotent, manual commits)."""

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidTopicError,
    KafkaConnectionError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from shared.kafka_connection import KafkaConnection, connection
from shared.keep_trying import Backoff, keep_trying
from shared.topic_plan import TopicSpec, TopicState, drift

log = logging.getLogger(__name__)

Kafka = KafkaConnection | str

# Errors no retry can fix: the record, its topic or our rights are wrong, not the cluster's
# state. (aiokafka's `retriable` flag is no guide: a produce timeout during an outage is
# "not retriable" too, and must be waited out.)
NEVER_ACCEPTED = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    InvalidTopicError,
)


class PublishRefused(Exception):
    """The broker will never take this output; the caller dead-letters its input."""


@contextlib.contextmanager
def refused_or_raise() -> Iterator[None]:
    try:
        yield
    except NEVER_ACCEPTED as exc:
        raise PublishRefused(f"{type(exc).__name__}: {exc}") from exc


def make_producer(kafka: Kafka, client_id: str) -> AIOKafkaProducer:
    # aiokafka's defaults are weaker than Java's: ask for acks from all replicas, idempotently.
    return AIOKafkaProducer(
        **connection(kafka).client_options(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )


def make_consumer(
    kafka: Kafka,
    group_id: str,
    client_id: str,
    max_poll_records: int = 500,
    fetch_min_bytes: int = 1,
    fetch_max_wait_ms: int = 500,
) -> AIOKafkaConsumer:
    """`fetch_min_bytes` 1: the broker answers a fetch as soon as one record is there, so
    `fetch_max_wait_ms` adds no latency; it only sets how often an idle consumer asks again
    (500 by default, as Kafka's: a shorter wait costs idle CPU, bench/FINDINGS.md). But aiokafka
    keeps one fetch in flight per broker, so a partition drained by `getmany` waits for the
    others' long poll before it is fetched again: a consumer that must keep a look-ahead full
    (the GPU stages) polls shorter. A sink that may lag (the tracker) asks for more bytes per
    fetch, so a busy pipeline's events come in fewer, fuller fetches."""
    return AIOKafkaConsumer(
        **connection(kafka).client_options(),
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        # A GPU host may hold work for minutes; liveness is the heartbeat, not the poll gap.
        max_poll_interval_ms=600_000,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        fetch_min_bytes=fetch_min_bytes,
        fetch_max_wait_ms=fetch_max_wait_ms,
        metadata_max_age_ms=connection(kafka).consumer_metadata_max_age_ms,
    )


@dataclass
class TopicReport:
    created: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)


def make_admin(kafka: Kafka) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection(kafka).client_options(), request_timeout_ms=30_000)


async def ensure_topics(
    kafka: Kafka,
    topics: Sequence[TopicSpec] | Iterable[str],
    partitions: int = 1,
    timeout_s: float = 60.0,
    reach_timeout_s: float | None = None,
) -> TopicReport:
    """Create the planned topics that are missing; report how existing ones differ.

    Existing topics are never altered: changing partitions or replication is an operator's
    decision (docs/operations.md, "Running on your Kafka cluster"). Bare names (tests, tools)
    get `partitions` and the broker's defaults. `reach_timeout_s`, if given, bounds the wait
    for the broker to answer at all (an operator at a terminal), within `timeout_s`.
    """
    plan = [t if isinstance(t, TopicSpec) else TopicSpec(t, partitions, 1) for t in topics]
    admin = make_admin(kafka)
    now = asyncio.get_running_loop().time()
    deadline = now + timeout_s
    reach = min(deadline, now + (timeout_s if reach_timeout_s is None else reach_timeout_s))
    await start_when_reachable(admin, "topics", deadline=reach)
    report = TopicReport()
    try:
        existing = set(await admin.list_topics())
        wanted = [spec for spec in plan if spec.name not in existing]
        if wanted:
            await _check_replication(admin, wanted)
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            num_partitions=spec.partitions,
                            replication_factor=spec.replication_factor,
                            topic_configs=dict(spec.configs),
                        )
                        for spec in wanted
                    ]
                )
            report.created = [spec.name for spec in wanted]
            log.info("created %d topics", len(wanted))
        await _wait_for_metadata(admin, {spec.name for spec in plan}, deadline)
        states = await describe_topics(admin, [s for s in plan if s.name in existing])
        for spec in plan:
            if spec.name in states:
                report.drift.extend(drift(spec, states[spec.name]))
    finally:
        await admin.close()
    return report


async def _check_replication(admin: AIOKafkaAdminClient, wanted: Sequence[TopicSpec]) -> None:
    brokers = len((await admin.describe_cluster())["brokers"])
    widest = max(spec.replication_factor for spec in wanted)
    if widest > brokers:
        raise ValueError(
            f"replication factor {widest} needs {widest} brokers, the cluster has {brokers}: "
            "on a single local broker set TOPIC_REPLICATION_FACTOR=1 TOPIC_MIN_INSYNC_REPLICAS=1"
        )


async def describe_topics(
    admin: AIOKafkaAdminClient, plan: Sequence[TopicSpec]
) -> dict[str, TopicState]:
    """Partitions, replication factor and the planned configs of existing topics."""
    if not plan:
        return {}
    metadata = await admin.describe_topics([spec.name for spec in plan])
    shape = {
        t["topic"]: (len(t["partitions"]), min(len(p["replicas"]) for p in t["partitions"]))
        for t in metadata
        if t["partitions"]
    }
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, spec.name, dict.fromkeys(spec.configs))
        for spec in plan
    ]
    configs: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            configs[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
            }
    return {
        name: TopicState(name, partitions, replicas, configs.get(name, {}))
        for name, (partitions, replicas) in shape.items()
    }


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: set[str], deadline: float) -> None:
    while not names <= set(await admin.list_topics()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics not visible in metadata: {sorted(names)}")
        await asyncio.sleep(0.2)


def make_topic_reader(kafka: Kafka, topic: str, fetch_max_wait_ms: int = 500) -> AIOKafkaConsumer:
    """Reads every partition of a topic from the beginning, outside any consumer group.

    For state every instance needs whole (control events) and for operator tools; it is
    assigned all partitions as soon as it starts. `fetch_max_wait_ms`: how often it asks again
    while nothing comes (a record ends the wait at once; the control topic's reader lengthens
    it once caught up, `shared/runtime/control.py`).
    """
    return AIOKafkaConsumer(
        topic,
        **connection(kafka).client_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
        metadata_max_age_ms=connection(kafka).consumer_metadata_max_age_ms,
        # The fetcher's periodic wake-ups find a control topic idle nearly always;
        # a record still ends the wait at once.
        consumer_timeout_ms=1_000,
    )


async def start_when_reachable(
    client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient,
    what: str,
    stop: asyncio.Event | None = None,
    max_delay_s: float = 5.0,
    deadline: float | None = None,
) -> bool:
    """Start a Kafka client, waiting out a broker that is down (a restart must not crash-loop).

    Returns False if `stop` was set before the broker answered; raises once past `deadline`
    (the event loop's clock).
    """
    loop = asyncio.get_running_loop()
    return await keep_trying(
        client.start,
        retry_on=KafkaConnectionError,
        what=f"{what}: broker unreachable",
        backoff=Backoff(first_delay_s=0.25, max_delay_s=max_delay_s),
        stop=stop,
        deadline_s=None if deadline is None else deadline - loop.time(),
        logger=log,
        clock=loop.time,
    )
