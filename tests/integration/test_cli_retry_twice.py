"""`cofi retry` run twice replays a dead letter once and sends a failed file back once: the
first run writes a `DeadLetterReplayed` after each record it acted on (the letter, the
`FileFailed`), in that record's partition; the tracker stamps the letter's row `replayedAt`;
the second run reads the marks and sends nothing; a rebuild from the topics writes the same
tables; `--again` sends them back once more (real Kafka and MariaDB, `cofi` as a
subprocess)."""

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from services.tracker.engine import make_engine
from services.tracker.settings import TrackerSettings
from services.tracker.tables import dead_letters
from shared import pipeline
from shared.events import (
    Attempt,
    DeadLetterReplayed,
    FileContext,
    FileFailed,
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
AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _failed_at_llm1() -> FileFailed:
    """b.wav failed at llm1 after two attempts; its input was stt's completion."""
    done = FileStageCompleted(
        batch_id=BATCH,
        file_name="b.wav",
        stage="stt",
        context=FileContext(audio_uri="file:///b.wav", host=HOSTS[0]),
    )
    return FileFailed(
        batch_id=BATCH,
        file_name="b.wav",
        stage="llm1",
        error_kind="transient",
        error="HTTP 503",
        attempts=tuple(Attempt(number=n, ok=False, started_at=AT) for n in (1, 2)),
        input_event=done.model_dump(mode="json"),
    )


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


async def test_retry_twice_replays_a_dead_letter_and_a_failed_file_once_and_a_rebuild_agrees(
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
        for name in ("a.wav", "b.wav"):
            upload = upload.model_copy(update={"file_name": name, "audio_uri": f"file:///{name}"})
            await producer.send_and_wait(topics.uploads, encode(upload), key=BATCH.encode())
        sent = await producer.send_and_wait(topics.failed, encode(letter), key=key)
        failed = await producer.send_and_wait(
            topics.failed, encode(_failed_at_llm1()), key=file_key(BATCH, "b.wav")
        )
    finally:
        await producer.stop()
    await track_everything(settings, 4)
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
    llm1 = pipeline.input_topic("llm1", topics)
    assert report["sent"] == [{"file": "b.wav", "topic": llm1}]
    assert report["failed_files"] == {"sent": 1, "skipped": 0, "already_retried": 0}
    # Each mark follows the record it names, in that record's partition.
    records = await read_topic(kafka_bootstrap, [topics.failed], lambda rs: len(rs) >= 4)
    marks = {
        (e.source_topic, e.partition, e.offset): (r.partition, r.offset)
        for r in records
        if isinstance(e := any_event.validate_json(r.value), DeadLetterReplayed)
    }
    assert marks.keys() == {
        (topics.triage, 1, 7),
        (topics.failed, failed.partition, failed.offset),
    }
    assert marks[(topics.triage, 1, 7)][0] == sent.partition
    assert marks[(topics.triage, 1, 7)][1] > sent.offset
    assert marks[(topics.failed, failed.partition, failed.offset)][0] == failed.partition
    assert marks[(topics.failed, failed.partition, failed.offset)][1] > failed.offset
    # The tracker reads the replayed record, the file sent back and the marks, and stamps
    # the letter's row.
    await track_everything(settings, 4)
    [stamped] = await _replayed_at(mariadb_url)
    assert stamped is not None

    second = await asyncio.to_thread(cofi, "retry", BATCH, "--json", **env)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["replayed"] == []
    assert again["dead_letters"] == {"replayed": 0, "skipped": 1, "already_replayed": 1}
    assert [s.startswith("a.wav: already replayed") for s in again["already_replayed"]] == [True]
    assert again["sent"] == []
    assert again["failed_files"] == {"sent": 0, "skipped": 1, "already_retried": 1}
    assert again["already_retried"] == ["b.wav: already retried (failed at llm1)"]
    assert await _end_offset(kafka_bootstrap, topics.triage) == 1  # the one replay
    assert await _end_offset(kafka_bootstrap, llm1) == 1  # the one retry
    assert await _end_offset(kafka_bootstrap, topics.failed) == 4  # letter, failure, 2 marks
    text = await asyncio.to_thread(cofi, "retry", BATCH, **env)
    assert text.returncode == 0, text.stderr
    assert f"skipped 1 failed files of batch {BATCH}: sent back by an earlier" in text.stdout

    tables = await dump_tables(mariadb_url)
    async with fresh_database(mariadb_server_url) as rebuild_url:
        rebuilt = settings.model_copy(
            update={"database_url": rebuild_url, "tracker_group_id": f"{topic_prefix}-rebuild"}
        )
        await track_everything(rebuilt, 8)
        assert await dump_tables(rebuild_url) == tables

    # An operator whose retried file never ended sends it back again on purpose.
    forced = await asyncio.to_thread(cofi, "retry", BATCH, "--again", "--json", **env)
    assert forced.returncode == 0, forced.stderr
    repeat = json.loads(forced.stdout)
    assert repeat["dead_letters"] == {"replayed": 1, "skipped": 0, "already_replayed": 0}
    assert repeat["failed_files"] == {"sent": 1, "skipped": 0, "already_retried": 0}
    assert await _end_offset(kafka_bootstrap, topics.triage) == 2
    assert await _end_offset(kafka_bootstrap, llm1) == 2
