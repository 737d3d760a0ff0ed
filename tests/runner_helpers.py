"""Building a `StageRunner` in the broker tests from the few things each test varies."""

from collections.abc import Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.kafka import make_producer
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
