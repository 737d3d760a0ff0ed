"""An output the broker will never accept dead-letters its input; the partition goes on."""

import asyncio
import base64
import json
from collections.abc import Sequence

from shared.events import Event
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.output import Output
from shared.runtime.stage_runner import StageRunner
from tests.kafka_helpers import read_topic
from tests.runner_helpers import stage_runner


class Blob(Event):
    n: int
    body: str


async def test_a_record_too_large_for_kafka_is_dead_lettered_and_the_next_goes_on(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    src, dst, dlq = f"{topic_prefix}.in", f"{topic_prefix}.out", f"{topic_prefix}.failed"
    await ensure_topics(kafka_bootstrap, [src, dst, dlq], partitions=1)
    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    # The second asks for a 2 MB body: over the 1 MiB that producer and broker accept.
    for value in (b"10", b"2000000", b"20"):
        await producer.send_and_wait(src, value, key=b"k")

    async def inflate(size: int) -> Sequence[Output]:
        return [Output(dst, b"k", Blob(n=size, body="x" * size))]

    runner: StageRunner[int] = stage_runner(
        name="inflater",
        consumer=make_consumer(kafka_bootstrap, f"{topic_prefix}-g", "inflater"),
        producer=producer,
        topics=[src],
        decode=int,
        handle=inflate,
        dead_letter_topic=dlq,
        max_in_flight=1,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        out = await read_topic(kafka_bootstrap, [dst], lambda rs: len(rs) >= 2)
        dead = await read_topic(kafka_bootstrap, [dlq], lambda rs: len(rs) >= 1)
    finally:
        stop.set()
        await task
        await producer.stop()
    assert sorted(Blob.model_validate_json(r.value).n for r in out) == [10, 20]
    letter = json.loads(dead[0].value)
    assert base64.b64decode(letter["value_b64"]) == b"2000000"
    assert letter["error"].startswith("publish refused: MessageSizeTooLargeError")
    assert letter["source_topic"] == src
