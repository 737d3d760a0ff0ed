"""Building a `StageRunner` in the broker tests from the few things each test varies, the
records they feed it and the commits they read back."""

from collections.abc import Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from shared.events import Event
from shared.kafka import make_consumer, make_producer
from shared.runtime.committed import committed_with_metadata
from shared.runtime.offset_metadata import decode
from shared.runtime.publisher import DEFAULT_PAYLOAD_LIMIT, Publisher
from shared.runtime.stage_runner import Handler, RunnerSettings, StageRunner, Work

M = TypeVar("M")


def stage_runner(
    *,
    name: str,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    topics: list[str],
    decode: Callable[[bytes], M],
    handle: Handler[M],
    dead_letter_topic: str,
    max_in_flight: int,
    payload_limit: int = DEFAULT_PAYLOAD_LIMIT,
    paused: Callable[[], bool] | None = None,
    priority: Callable[[M], float] | None = None,
    **settings: Any,
) -> StageRunner[M]:
    """A runner over a started `producer` (the test stops it), as the services wire one."""
    bootstrap = producer.client._bootstrap_servers  # the publisher's others go there too
    publisher = Publisher(
        lambda: make_producer(bootstrap, name),
        service=name,
        dead_letter_topic=dead_letter_topic,
        payload_limit=payload_limit,
        producer=producer,
    )
    return StageRunner(
        RunnerSettings(name=name, topics=tuple(topics), max_in_flight=max_in_flight, **settings),
        consumer,
        publisher,
        Work(decode=decode, handle=handle, priority=priority, paused=paused),
    )


class Number(Event):
    """What the test stages publish: an event, which the runner encodes."""

    n: int


async def produce_values(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = make_producer(bootstrap, "test")
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, key=b"k")  # one partition via one key
    finally:
        await producer.stop()


async def committed_offsets(
    bootstrap: str, group: str, tps: list[TopicPartition]
) -> dict[TopicPartition, tuple[int, frozenset[int]]]:
    """The group's commits as the broker holds them: position and finished offsets above."""
    checker = make_consumer(bootstrap, group, "checker")
    await checker.start()
    try:
        found = await committed_with_metadata(checker, tps)
    finally:
        await checker.stop()
    return {tp: (om.offset, decode(om.metadata, om.offset, 4096)) for tp, om in found.items()}
