"""The control topic: read to its end before work starts; cancels and drains keyed apart."""

import asyncio

from cli.dead_letters import cancellation, drain
from shared.events import encode
from shared.kafka import make_producer
from shared.provisioning import create_pipeline_topics
from shared.runtime.control import ControlView
from shared.settings import CommonSettings
from tests.kafka_helpers import wait_until
from tests.stage_helpers import running


async def test_a_service_learns_every_earlier_cancel_and_drain_before_work_starts(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    await create_pipeline_topics(settings)
    topics = settings.topics
    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    try:
        outputs = [cancellation(f"b{n}", "test", topics) for n in range(300)]
        # A batch named like a drain key, and that host drained: two keys, both kept.
        outputs += [cancellation("host:x", "odd name", topics), drain("x", True, "test", topics)]
        acks = [await producer.send(o.topic, encode(o.event), key=o.key) for o in outputs]
        # A cancel written under the older key (the bare batch id) still counts.
        old = cancellation("legacy", "old", topics)
        acks.append(await producer.send(old.topic, encode(old.event), key=b"legacy"))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    assert cancellation("host:x", "", topics).key != drain("x", True, "", topics).key

    control = ControlView(kafka_bootstrap, topics.control)
    async with running(control.run):
        started = asyncio.Event()
        assert await asyncio.wait_for(control.caught_up(started), timeout=30)
        # Once caught up, everything written before is known: nothing is started wrongly.
        assert {f"b{n}" for n in range(300)} <= control.cancelled_batches
        assert {"host:x", "legacy"} <= control.cancelled_batches
        assert control.drained_hosts == {"x"}


async def test_an_empty_control_topic_lets_work_start_at_once(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    await create_pipeline_topics(settings)
    control = ControlView(kafka_bootstrap, settings.topics.control)
    async with running(control.run):
        assert await asyncio.wait_for(control.caught_up(asyncio.Event()), timeout=30)
        assert not control.cancelled_batches and not control.drained_hosts


async def test_a_long_poll_neither_delays_catching_up_nor_a_later_cancel(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """The reader asks the broker every 30 s here: an empty topic is still read to its end
    within the short wait (the end offsets do not queue behind a long fetch), and a cancel
    written afterwards ends the long poll at once."""
    settings = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    await create_pipeline_topics(settings)
    topics = settings.topics
    control = ControlView(kafka_bootstrap, topics.control, fetch_wait_ms=30_000)
    async with running(control.run):
        assert await asyncio.wait_for(control.caught_up(asyncio.Event()), timeout=10)
        producer = make_producer(kafka_bootstrap, "test")
        await producer.start()
        try:
            late = cancellation("late", "test", topics)
            await producer.send_and_wait(late.topic, encode(late.event), key=late.key)
        finally:
            await producer.stop()
        await wait_until(lambda: "late" in control.cancelled_batches, timeout_s=10, what="cancel")
