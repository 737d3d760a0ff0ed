"""Bad input on every topic, and awkward files: each gets a clear outcome, the batch goes on."""

import base64
import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.audio import make_batch, write_wav
from cli.upload import uploads_for
from shared.events import (
    BatchClosed,
    FileContext,
    FileStageCompleted,
    FileUploaded,
    encode,
    file_key,
)
from shared.kafka import make_producer
from shared.stages import GPU_STAGES
from tests.kafka_helpers import read_topic, wait_until
from tests.pipeline_harness import running_pipeline

GOOD = 60
POISON = {
    "bytes": b"\x00\xff\xfe not even text",
    "wrong-schema": json.dumps({"type": "FileStageCompleted", "v": 1, "batch": 7}).encode(),
    "unknown-type": json.dumps({"type": "Surprise", "v": 1}).encode(),
}


async def _produce(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]]) -> None:
    producer = make_producer(bootstrap, "test")
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def test_poison_on_every_topic_and_awkward_files_leave_the_batch_complete(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    batch = f"bad-{uuid.uuid4().hex[:6]}"
    paths = make_batch(tmp_path / "audio", GOOD)
    empty = tmp_path / "audio" / "empty.wav"
    empty.write_bytes(b"")
    real = write_wav_file(tmp_path / "audio" / "real.wav")
    awkward = {
        'it\'s a "quoted" call.wav': real,
        "x'); DROP TABLE fileDistribution; --.wav": real,
        "../../etc/passwd/sub\\dir/call.wav": real,
        "long_" + "n" * 995 + ".wav": real,
        "empty.wav": empty,
        "missing.wav": tmp_path / "audio" / "never-written.wav",
    }
    async with running_pipeline(
        topic_prefix, mariadb_url, tmp_path / "logs", kafka_bootstrap
    ) as pipeline:
        settings = pipeline.config.settings()
        topics = settings.topics
        uploads = uploads_for(batch, paths) + [
            FileUploaded(batch_id=batch, file_name=name, audio_uri=path.resolve().as_uri())
            for name, path in awkward.items()
        ]
        closed = BatchClosed(batch_id=batch, file_count=len(uploads))
        await _produce(
            kafka_bootstrap,
            [(topics.uploads, batch.encode(), encode(e)) for e in [*uploads, closed]],
        )

        stage_topics = [
            topics.uploads,
            topics.triage,
            topics.llm("llm1"),
            topics.llm("llm2"),
            *(topics.gpu(s, h) for s in GPU_STAGES for h in settings.host_ips),
        ]
        tracker_only = [topics.done, topics.failed, topics.control]
        await _produce(
            kafka_bootstrap,
            [(t, b"poison", v) for t in stage_topics + tracker_only for v in POISON.values()],
        )
        # A file of a batch nobody uploaded, mid-pipeline.
        ghost = FileStageCompleted(
            batch_id="ghost-batch",
            file_name="ghost.wav",
            stage="denoise",
            context=FileContext(
                audio_uri=real.resolve().as_uri(),
                host=settings.host_ips[0],
                denoised_uri=real.resolve().as_uri(),
                duration_s=2.0,
            ),
        )
        await _produce(
            kafka_bootstrap,
            [
                (
                    topics.gpu("ivr", settings.host_ips[0]),
                    file_key("ghost-batch", "ghost.wav"),
                    encode(ghost),
                )
            ],
        )

        summary = await pipeline.wait_finished(batch, timeout_s=240)
        letters = await read_topic(
            kafka_bootstrap,
            [topics.failed],
            lambda rs: (
                len(
                    {
                        (json.loads(r.value).get("source_topic"), r.value)
                        for r in rs
                        if _is_letter(r.value)
                    }
                )
                >= len(stage_topics) * len(POISON)
            ),
            timeout_s=120,
        )
        async with pipeline.engine.connect() as conn:
            rows = {
                r.file: r
                for r in await conn.execute(
                    text(
                        "SELECT file, terminalState, failedStage, failedError FROM fileDistribution "
                        "WHERE batchId = :b"
                    ),
                    {"b": batch},
                )
            }
            tracked_letters = (
                await conn.execute(text("SELECT sourceTopic, valueB64 FROM deadLetters"))
            ).all()
        ghost_row = await _wait_for_row(pipeline.engine, "ghost-batch")

    # The batch finished, every file in one terminal state, the awkward names stored exactly.
    assert summary.total_files == GOOD + len(awkward)
    assert summary.unfinished == 0
    for name in list(awkward)[:4]:
        assert rows[name].terminalState in ("done", "skipped"), name
    assert (rows["empty.wav"].terminalState, rows["empty.wav"].failedStage) == ("failed", "denoise")
    assert "undecodable audio" in rows["empty.wav"].failedError
    assert (rows["missing.wav"].terminalState, rows["missing.wav"].failedStage) == (
        "failed",
        "denoise",
    )
    assert "audio not found" in rows["missing.wav"].failedError

    # Every poison message on a stage's topic became a dead letter with its raw bytes.
    dead = {
        (json.loads(r.value)["source_topic"], base64.b64decode(json.loads(r.value)["value_b64"]))
        for r in letters
        if _is_letter(r.value)
    }
    for topic in stage_topics:
        for raw in POISON.values():
            assert (topic, raw) in dead, (topic, raw)
    # Poison on the topics only the tracker reads is kept by the tracker.
    kept = {(t, base64.b64decode(v)) for t, v in tracked_letters}
    for topic in tracker_only:
        for raw in POISON.values():
            assert (topic, raw) in kept, (topic, raw)
    # The file of an unknown batch went through the rest of the pipeline, tracked on its own.
    assert ghost_row.terminalState in ("done", "skipped")
    assert ghost_row.ivrDone == 1


async def _wait_for_row(engine: AsyncEngine, batch: str) -> Row[Any]:
    """The file of `batch` once it reached a terminal state."""
    row: Row[Any] | None = None

    async def finished() -> bool:
        nonlocal row
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT terminalState, ivrDone FROM fileDistribution WHERE batchId = :b "
                        "AND terminalState IS NOT NULL"
                    ),
                    {"b": batch},
                )
            ).first()
        return row is not None

    await wait_until(finished, 120, f"a finished file of batch {batch}", interval_s=0.5)
    assert row is not None
    return row


def _is_letter(value: bytes | None) -> bool:
    try:
        kind: object = json.loads(value or b"").get("type")
        return kind == "DeadLetter"
    except ValueError:
        return False


def write_wav_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, 2.0, tone_hz=300, seed=1)
    return path
