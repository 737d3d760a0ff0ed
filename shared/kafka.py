"""Kafka clients configured the way cofi needs them (acks=all, idempotent, manual commits)."""

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

log = logging.getLogger(__name__)


def make_producer(bootstrap_servers: str, client_id: str) -> AIOKafkaProducer:
    # aiokafka's defaults are weaker than Java's: ask for acks from all replicas, idempotently.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )


def make_consumer(
    bootstrap_servers: str,
    group_id: str,
    client_id: str,
    max_poll_records: int = 500,
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        # A GPU host may hold work for minutes; liveness is the heartbeat, not the poll gap.
        max_poll_interval_ms=600_000,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        fetch_max_wait_ms=100,
        metadata_max_age_ms=5_000,
    )


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    partitions: int,
    timeout_s: float = 60.0,
    compacted: Iterable[str] = (),
) -> None:
    """Create the topics that are missing; never rely on broker auto-creation.

    `compacted` topics keep the latest message per key (control events per batch).
    """
    compact = set(compacted)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in dict.fromkeys(names) if n not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            n,
                            num_partitions=partitions,
                            replication_factor=1,
                            topic_configs={"cleanup.policy": "compact"} if n in compact else {},
                        )
                        for n in wanted
                    ]
                )
            log.info("created %d topics", len(wanted))
        await _wait_for_metadata(admin, set(dict.fromkeys(names)), deadline)
    finally:
        await admin.close()


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: set[str], deadline: float) -> None:
    while not names <= set(await admin.list_topics()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics not visible in metadata: {sorted(names)}")
        await asyncio.sleep(0.2)


def make_topic_reader(bootstrap_servers: str, topic: str) -> AIOKafkaConsumer:
    """Reads every partition of a topic from the beginning, outside any consumer group.

    For state every instance needs whole (control events) and for operator tools; it is
    assigned all partitions as soon as it starts.
    """
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=5_000,
    )


async def start_when_reachable(
    client: AIOKafkaProducer | AIOKafkaConsumer,
    what: str,
    stop: asyncio.Event | None = None,
    max_delay_s: float = 5.0,
) -> bool:
    """Start a Kafka client, waiting out a broker that is down (a restart must not crash-loop).

    Returns False if `stop` was set before the broker answered.
    """
    delay = 0.25
    while True:
        try:
            await client.start()
            return True
        except KafkaConnectionError as exc:
            log.warning("%s: broker unreachable (%s), retrying in %.1fs", what, exc, delay)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return False
            except TimeoutError:
                pass
        delay = min(delay * 2, max_delay_s)
