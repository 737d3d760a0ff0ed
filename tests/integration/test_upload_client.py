"""The upload client against the real broker: what it publishes is what cofi's contract says."""

import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from cli.upload import submit
from shared.events import BatchClosed, FileUploaded, upload_event
from shared.kafka import ensure_topics
from shared.topics import Topics
from shared.upload_client import UploadClient, uploads_for
from tests.kafka_helpers import read_topic


async def _uploads_topic(bootstrap: str, prefix: str) -> str:
    topic = Topics(prefix).uploads
    await ensure_topics(bootstrap, [topic], partitions=4)
    return topic


async def test_files_then_batch_closed_on_one_partition_keyed_by_batch(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topic = await _uploads_topic(kafka_bootstrap, topic_prefix)
    batches = {f"b-{uuid.uuid4().hex[:6]}": 30 for _ in range(3)}
    progress: list[int] = []
    async with UploadClient(kafka_bootstrap, topic_prefix) as client:
        for batch, count in batches.items():
            paths = [tmp_path / batch / f"call-{i:03d}.wav" for i in range(count)]
            assert await client.submit_batch(batch, paths, progress.append) == count
        one = await client.submit_file("single", "x.wav", "file:///data/audio/x.wav")
        await client.close_batch("single", 1)
    records = await read_topic(
        kafka_bootstrap, [topic], lambda rs: len(rs) >= 3 * 31 + 2, timeout_s=60
    )
    assert progress == [30, 30, 30]
    for batch, count in {**batches, "single": 1}.items():
        mine = [r for r in records if r.key == batch.encode()]
        assert len({r.partition for r in mine}) == 1, "a batch stays in one partition"
        events = [upload_event.validate_json(r.value) for r in sorted(mine, key=lambda r: r.offset)]
        *files, last = events
        assert isinstance(last, BatchClosed) and last.file_count == count
        assert all(isinstance(e, FileUploaded) for e in files) and len(files) == count
    [single] = [upload_event.validate_json(r.value) for r in records if r.key == b"single"][:1]
    assert single == one


async def test_invalid_events_are_refused_before_anything_is_sent(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = await _uploads_topic(kafka_bootstrap, topic_prefix)
    async with UploadClient(kafka_bootstrap, topic_prefix) as client:
        with pytest.raises(ValidationError):
            await client.submit_file("b" * 65, "a.wav", "file:///a.wav")
        with pytest.raises(ValidationError):
            await client.submit_file("b", "", "file:///a.wav")
        with pytest.raises(ValidationError):
            await client.close_batch("b", -1)
        await client.close_batch("marker", 0)
    [record] = await read_topic(kafka_bootstrap, [topic], lambda rs: len(rs) >= 1)
    assert record.key == b"marker"


async def test_cofi_submit_goes_through_the_client(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topic = await _uploads_topic(kafka_bootstrap, topic_prefix)
    paths = [tmp_path / f"{i}.wav" for i in range(3)]
    assert await submit(kafka_bootstrap, Topics(topic_prefix), "cli", paths) == 3
    records = await read_topic(kafka_bootstrap, [topic], lambda rs: len(rs) >= 4)
    events = [upload_event.validate_json(r.value) for r in records]
    assert events[:3] == [
        e.model_copy(update={"uploaded_at": events[i].uploaded_at})  # type: ignore[union-attr]
        for i, e in enumerate(uploads_for("cli", paths))
    ]
    assert events[3] == BatchClosed(batch_id="cli", file_count=3, closed_at=events[3].closed_at)  # type: ignore[union-attr]
