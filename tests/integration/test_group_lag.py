"""A stage group's lag from the broker's committed offsets, exported by the tracker, also when
every consumer of the group is dead (issue 22: the consumers' own lag series vanish with them).

The LLM stage's llm1 group commits part of its input and dies; the tracker, over HTTP, says
how many records wait past that commit, and follows as more arrive with no consumer running.
"""

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from services.tracker.main import run as run_tracker
from services.tracker.settings import TrackerSettings
from shared.groups import llm_stage_group
from shared.kafka import make_producer
from shared.pipeline import input_topic
from shared.provisioning import create_pipeline_topics
from tests.metrics_helpers import free_metrics_port, scrape_until
from tests.stage_helpers import running

REFRESH_S = 0.5
# The tracker migrates a fresh database and joins its group before the first export: on a
# loaded machine (CI builds the images meanwhile) that took longer than a minute once.
FIRST_EXPORT_S = 180.0


async def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = make_producer(bootstrap, "test")
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(topic, b"{}", key=f"f{i}".encode(), partition=0)
    finally:
        await producer.stop()


async def _commit_and_die(bootstrap: str, group: str, tp: TopicPartition, offset: int) -> None:
    """What a consumer of the group leaves behind when it is killed: its last commit."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(offset, "")})
    finally:
        await consumer.stop()


async def test_the_tracker_exports_a_dead_groups_lag_from_its_committed_offsets(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str
) -> None:
    port = free_metrics_port()
    settings = TrackerSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        database_url=mariadb_url,
        metrics_port=port,
        metrics_refresh_s=REFRESH_S,
        group_lag_refresh_s=REFRESH_S,
    )
    await create_pipeline_topics(settings)
    topic = input_topic("llm1", settings.topics)
    group = llm_stage_group(settings.topics, "llm1")
    await _produce(kafka_bootstrap, topic, 8)
    await _commit_and_die(kafka_bootstrap, group, TopicPartition(topic, 0), 3)
    labels = {"group": group, "topic": topic}
    url = f"http://127.0.0.1:{port}"
    async with running(lambda stop: run_tracker(settings, stop)):
        first = await scrape_until(
            url,
            lambda s: s.get("cofi_group_lag", **labels) == 5,
            timeout_s=FIRST_EXPORT_S,
            what="llm1's group 5 records behind its last commit",
        )
        assert first.get("cofi_group_committed_offset", **labels) == 3
        await _produce(kafka_bootstrap, topic, 2)
        later = await scrape_until(
            url,
            lambda s: s.get("cofi_group_lag", **labels) == 7,
            what="the lag following new records with no consumer running",
        )
    assert later.get("cofi_group_committed_offset", **labels) == 3
    # A group that never committed (llm2 here) has no series: no lag is made up for it.
    llm2 = llm_stage_group(settings.topics, "llm2")
    assert not [s for s in later.series("cofi_group_lag") if s["group"] == llm2]
