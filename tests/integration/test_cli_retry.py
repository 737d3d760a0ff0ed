"""`cofi retry` and `cofi drain` against the real broker and MariaDB, as subprocesses: a
batch's dead letters that decode are replayed byte for byte, the others reported; a file that
failed distribution goes back to the distributor without the hosts an outage took away; a
drain of a listed host is published, a typo is not."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import create_async_engine

from services.tracker.migrate import migrate
from shared.events import (
    FileContext,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    control_event,
    encode,
    upload_event,
)
from shared.kafka import ensure_topics
from shared.runtime.dead_letters import dead_letter
from shared.topics import Topics
from tests.kafka_helpers import read_topic
from tests.tracker_scenario import tracker_for

ROOT = Path(__file__).resolve().parents[2]


def cofi(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_retry_replays_dead_letters_and_retries_a_distribution_failure_without_avoid(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_bootstrap, [topics.uploads, topics.triage, topics.failed])
    await migrate(mariadb_url)
    engine = create_async_engine(mariadb_url)
    try:  # the tracker knows the batch
        upload = FileUploaded(batch_id="b", file_name="a.wav", audio_uri="file:///a.wav")
        await tracker_for(engine).apply_events([upload])
    finally:
        await engine.dispose()

    handled = FileStageCompleted(
        batch_id="b", file_name="a.wav", stage="lid", context=FileContext(audio_uri="u", host="h1")
    )
    raw = encode(handled)
    moved = FileReassigned(
        batch_id="b",
        file_name="c.wav",
        audio_uri="file:///c.wav",
        stage="stt",
        from_host="h1",
        avoid=("h1", "h2"),
        assignment=1,
        attempt_base=2,
    )
    letters = [
        dead_letter(
            topic=topics.triage,
            partition=0,
            offset=3,
            key=b"b/a.wav",
            value=raw,
            consumer="x",
            error="handler error: OverflowError",
        ),
        dead_letter(
            topic=topics.triage,
            partition=0,
            offset=4,
            key=b"b/z.wav",
            value=b"{",
            consumer="x",
            error="undecodable",
        ),
        FileFailed(
            batch_id="b",
            file_name="c.wav",
            stage="distribute",
            error_kind="permanent",
            error="not re-assigned: every GPU host is marked down",
            input_event=moved.model_dump(mode="json"),
        ),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for event in letters:
            await producer.send_and_wait(topics.failed, encode(event), key=b"b/x")
    finally:
        await producer.stop()

    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": topic_prefix,
        "DATABASE_URL": mariadb_url,
    }
    done = await asyncio.to_thread(cofi, "retry", "b", "--json", **env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["sent"] == [{"file": "c.wav", "topic": topics.uploads}]
    assert report["replayed"] == [{"file": "a.wav", "topic": topics.triage}]
    [left] = report["not_retried"]
    assert left.startswith(f"dead letter {topics.triage}[0]@4: still does not decode")

    [replayed] = await read_topic(kafka_bootstrap, [topics.triage], lambda rs: len(rs) >= 1)
    assert (replayed.key, replayed.value) == (b"b/a.wav", raw)
    [again] = await read_topic(kafka_bootstrap, [topics.uploads], lambda rs: len(rs) >= 1)
    event = upload_event.validate_json(again.value)
    assert isinstance(event, FileReassigned) and again.key == b"b"
    assert event.avoid == () and event.file_name == "c.wav"


async def test_drain_json_says_what_it_published_and_the_control_topic_keeps_it(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_bootstrap, [topics.control])
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": topic_prefix,
        "GPU_HOSTS": "gpu-a:4,gpu-b:4",
    }
    typo = await asyncio.to_thread(cofi, "drain", "gpu-c", "--json", **env)
    assert typo.returncode == 2 and typo.stdout == ""
    done = await asyncio.to_thread(cofi, "drain", "gpu-b", "--reason", "disk swap", "--json", **env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"host": "gpu-b", "drained": True, "reason": "disk swap"}
    records = await read_topic(kafka_bootstrap, [topics.control], lambda rs: len(rs) >= 1)
    assert [(r.key, control_event.validate_json(r.value).host) for r in records] == [  # type: ignore[union-attr]
        (b"host:gpu-b", "gpu-b")
    ]
