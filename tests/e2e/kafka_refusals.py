"""What a client without rights is refused by a broker under the ACL plan (shared/acl_plan.py):
shared by the local broker's test (tests/e2e/test_kafka_acls.py) and the compose stack's
(tests/e2e/test_compose_boot.py)."""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from shared.kafka import make_consumer, make_producer, make_topic_reader
from shared.kafka_connection import KafkaConnection
from shared.pipeline import PIPELINE, input_topic
from shared.topics import Topics

UPLOADED = b"{}"
REFUSED = (TopicAuthorizationFailedError, GroupAuthorizationFailedError)


def transcript_topics(topics: Topics, host: str) -> list[str]:
    """The stages' inputs that hold a transcript: from the first that reads one (stt) on."""
    return [
        input_topic(row.name, topics, host if row.per_host else None)
        for row in PIPELINE
        if row.name == "stt" or row.runner == "llm_stage"
    ]


async def read_one(consumer: AIOKafkaConsumer, timeout_s: float = 20) -> bytes:
    """The first record the consumer gets; an authorization error is raised as it comes
    (from `start` too: the consumer is stopped either way, or it leaks its connections)."""
    try:
        await consumer.start()
        async with asyncio.timeout(timeout_s):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        value: bytes = record.value
                        return value
    finally:
        await consumer.stop()


async def send(kafka: KafkaConnection, topic: str, value: bytes = UPLOADED) -> None:
    producer = make_producer(kafka, "acl-test")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"b1")
    finally:
        await producer.stop()


async def upload_user_is_refused_all_but_uploads(
    upload: KafkaConnection, topics: Topics, host: str
) -> None:
    """The upload system's user writes `uploads` (an invalid event: a dead letter), and is
    refused writing `done` or `control` and reading a transcript, with or without a group."""
    await send(upload, topics.uploads)
    for topic in (topics.done, topics.control):
        with pytest.raises(TopicAuthorizationFailedError):
            await send(upload, topic)
    for topic in transcript_topics(topics, host):
        with pytest.raises(REFUSED):
            await read_one(make_topic_reader(upload, topic))
        stealer = make_consumer(upload, f"{topics.prefix}-steal", "acl-test")
        stealer.subscribe([topic])
        with pytest.raises(REFUSED):  # nor through a consumer group
            await read_one(stealer)
