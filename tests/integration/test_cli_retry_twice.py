"""`cofi retry` run twice replays a dead letter once: the first run writes a
`DeadLetterReplayed` in the letter's partition, the tracker stamps the letter's row
`replayedAt`, the second run reads the mark and replays nothing; a rebuild from the topics
writes the same tables (real Kafka and MariaDB, `cofi` as a subprocess)."""

import asyncio
import json
from typing import Any

from sqlalchemy import select

from services.tracker.engine import make_engine
from services.tracker.settings import TrackerSettings
from services.tracker.tables import dead_letters
from shared.events import (
    DeadLetterReplayed,
    FileContext,
    FileStageCompleted,
    FileUploaded,
    any_event,
    encode,
    file_key,
)
from shared.kafka import ensure_topics, make_producer, make_topic_reader
from shared.runtime.dead_letters import dead_letter
from shared.settings import GpuHost
from tests.database_helpers import fresh_database
from tests.integration.test_cli_retry import cofi
from tests.integration.test_tracker_rebuild import dump_tables, track_everything
from tests.kafka_helpers import read_topic
from tests.tracker_scenario import HOSTS

BATCH = "b-twice"


async def _end_offset(bootstrap: str, topic: str) -> int:
    """How many records the topic holds, over its partitions."""
    reader = make_topic_reader(bootstrap, topic)
    await reader.start()
    try:
        ends = await reader.end_offsets(list(reader.assignment()))
        return sum(ends.values())
    finally:
        await reader.stop()


async def _replayed_at(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(dead_letters.c.replayedAt))).scalars())
    finally:
        await engine.dispose()


async def test_retry_twice_replays_a_dead_letter_once_and_a_rebuild_agrees(
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
    await ensure_topics(kafka_bootstrap, topics.all_topics(list(HOSTS)), partitions=3)
    upload = FileUploaded(batch_id=BATCH, file_name="a.wav", audio_uri="file:///a.wav")
    handled = FileStageCompleted(
        batch_id=BATCH,
        file_name="a.wav",
        stage="lid",
        context=FileContext(audio_uri="file:///a.wav", host=HOSTS[0]),
    )
    raw = encode(handled)
    key = file_key(BATCH, "a.wav")
    letter = dead_letter(
        topic=topics.triage,
        partition=1,
        offset=7,
        key=key,
        value=raw,
        consumer="triage",
        error="handler error: OverflowError",
    )
    producer = make_producer(kafka_bootstrap, f"{topic_prefix}-test")
    await producer.start()
    try:
        await producer.send_and_wait(topics.uploads, encode(upload), key=BATCH.encode())
        sent = await producer.send_and_wait(topics.failed, encode(letter), key=key)
    finally:
        await producer.stop()
    await track_everything(settings, 2)
    assert await _replayed_at(mariadb_url) == [None]

    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": topic_prefix,
        "DATABASE_URL": mariadb_url,
    }
    first = await asyncio.to_thread(cofi, "retry", BATCH, "--json", **env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["replayed"] == [{"file": "a.wav", "topic": topics.triage}]
    assert report["dead_letters"] == {"replayed": 1, "skipped": 0, "already_replayed": 0}
    # The mark follows its letter in the letter's own partition.
    records = await read_topic(kafka_bootstrap, [topics.failed], lambda rs: len(rs) >= 2)
    marks = [r for r in records if isinstance(any_event.validate_json(r.value), DeadLetterReplayed)]
    assert [(m.partition, m.offset > sent.offset) for m in marks] == [(sent.partition, True)]
    # The tracker reads the replayed record and the mark, and stamps the letter's row.
    await track_everything(settings, 2)
    [stamped] = await _replayed_at(mariadb_url)
    assert stamped is not None

    second = await asyncio.to_thread(cofi, "retry", BATCH, "--json", **env)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["replayed"] == []
    assert again["dead_letters"] == {"replayed": 0, "skipped": 1, "already_replayed": 1}
    assert [s.startswith("a.wav: already replayed") for s in again["already_replayed"]] == [True]
    assert await _end_offset(kafka_bootstrap, topics.triage) == 1  # the one replay
    assert await _end_offset(kafka_bootstrap, topics.failed) == 2  # the letter, one mark

    tables = await dump_tables(mariadb_url)
    async with fresh_database(mariadb_server_url) as rebuild_url:
        rebuilt = settings.model_copy(
            update={"database_url": rebuild_url, "tracker_group_id": f"{topic_prefix}-rebuild"}
        )
        await track_everything(rebuilt, 4)
        assert await dump_tables(rebuild_url) == tables
