"""A record with a 70 KiB key and a value that is not JSON: its dead letter keeps key and
value whole (deadLetters.keyB64 is LONGTEXT since 0008), and a rebuild from the topics
writes the very same row."""

import base64

from sqlalchemy import select

from services.tracker.engine import make_engine
from services.tracker.settings import TrackerSettings
from services.tracker.tables import dead_letters
from shared.events import DeadLetter, encode
from shared.kafka import ensure_topics, make_producer
from shared.settings import GpuHost
from tests.database_helpers import fresh_database
from tests.integration.test_tracker_rebuild import track_everything
from tests.tracker_scenario import HOSTS

KEY = b"k" * 70 * 1024
VALUE = b"not json {"


async def _letters(url: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            # Which reader's letter (the distributor's or the tracker's own) holds the row's
            # consumer and error depends on the order they are read in: not compared here.
            columns = [
                c for c in dead_letters.c if c.name not in ("id", "consumer", "error", "createdAt")
            ]
            rows = (await conn.execute(select(*columns).order_by(dead_letters.c.letterKey))).all()
    finally:
        await engine.dispose()
    return [tuple(r) for r in rows]


async def test_a_70_kib_key_is_kept_whole_and_rebuilt_the_same(
    mariadb_url: str, mariadb_server_url: str, topic_prefix: str, kafka_bootstrap: str
) -> None:
    settings = TrackerSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        gpu_hosts=[GpuHost(ip=h) for h in HOSTS],
        database_url=mariadb_url,
        log_json=False,
    )
    topics = settings.topics
    await ensure_topics(kafka_bootstrap, topics.all_topics(list(HOSTS)), partitions=1)
    producer = make_producer(kafka_bootstrap, f"{topic_prefix}-test")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topics.uploads, value=VALUE, key=KEY)
        # What the distributor writes about the same record (one row for both).
        letter = DeadLetter(
            source_topic=topics.uploads,
            partition=sent.partition,
            offset=sent.offset,
            consumer="distributor",
            error="undecodable: not JSON",
            key_b64=base64.b64encode(KEY).decode(),
            value_b64=base64.b64encode(VALUE).decode(),
        )
        await producer.send_and_wait(topics.failed, value=encode(letter), key=b"dead")
    finally:
        await producer.stop()

    await track_everything(settings, 2)
    rows = await _letters(mariadb_url)
    assert len(rows) == 1
    engine = make_engine(mariadb_url)
    try:
        async with engine.connect() as conn:
            key_b64, value_b64 = (
                await conn.execute(select(dead_letters.c.keyB64, dead_letters.c.valueB64))
            ).one()
    finally:
        await engine.dispose()
    assert base64.b64decode(key_b64) == KEY
    assert base64.b64decode(value_b64) == VALUE

    async with fresh_database(mariadb_server_url) as rebuild_url:
        second = settings.model_copy(
            update={"database_url": rebuild_url, "tracker_group_id": f"{topic_prefix}-rebuild"}
        )
        await track_everything(second, 2)
        assert await _letters(rebuild_url) == rows
