"""Crash scenarios about what reaches the pipeline: an upload after its batch completed,
poison records and duplicates on every topic."""

import base64
import json
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import text

from services.tracker.letters import stage_of_topic
from shared.events import BatchClosed, FileUploaded, encode
from shared.kafka import make_producer
from tests.crash.harness import ChaosRun
from tests.crash.invariants import Outcome
from tests.crash.scenario import Breakables
from tests.kafka_helpers import read_to_end, wait_until

# -- 10. an upload after the batch completed -----------------------------------------------
LATE_FILE = "uploaded_too_late.wav"


COMPLETED_AT: dict[str, object] = {}


async def late_upload(run: ChaosRun, infra: Breakables) -> None:
    await run.wait_finished()
    COMPLETED_AT[run.batch_id] = await _completed_at(run)
    event = FileUploaded(
        batch_id=run.batch_id, file_name=LATE_FILE, audio_uri=run.paths[-1].resolve().as_uri()
    )
    # The distributor cannot know the batch is full: the file runs through the stages once,
    # the tracker writes none of it.
    run.record(
        f"upload {LATE_FILE} after the batch completed", {"distribute": 1}, may_follow_batch=True
    )
    producer = make_producer(run.config.bootstrap, "crash-late-upload")
    await producer.start()
    try:
        await producer.send_and_wait(run.topics.uploads, encode(event), key=run.batch_id.encode())
    finally:
        await producer.stop()

    async def rejected() -> bool:
        run.assert_alive()
        async with run.engine.connect() as conn:
            found = await conn.execute(
                text("SELECT COUNT(*) FROM deadLetters WHERE batchId = :b AND fileName = :f"),
                {"b": run.batch_id, "f": LATE_FILE},
            )
            return bool(found.scalar_one())

    await wait_until(rejected, 120.0, f"the tracker to reject {LATE_FILE}", interval_s=0.3)


async def _completed_at(run: ChaosRun) -> object:
    async with run.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT completedAt FROM batchStatus WHERE batchId = :b"), {"b": run.batch_id}
        )
        return found.scalar_one()


async def late_upload_rejected(run: ChaosRun, outcome: Outcome) -> None:
    before = COMPLETED_AT.pop(run.batch_id, None)
    after = await _completed_at(run)
    if before is None or after != before:
        outcome.fail(f"completedAt moved: {before} -> {after}")
    async with run.engine.connect() as conn:
        reasons = (
            (
                await conn.execute(
                    text("SELECT error FROM deadLetters WHERE batchId = :b AND fileName = :f"),
                    {"b": run.batch_id, "f": LATE_FILE},
                )
            )
            .scalars()
            .all()
        )
    if not any("closed with its" in (r or "") for r in reasons):
        outcome.fail(f"no dead letter says why {LATE_FILE} was rejected: {reasons}")


# -- 7. poison messages and duplicates ---------------------------------------------------------
POISON = (
    b"\xff\xfe\x00 not json at all",
    b'{"v": 1, "type": "FileStageCompleted", "batch_id": "%s", "file_name": "poison"}',
    b"[1, 2, 3]",
)


@dataclass
class Injected:
    poison: list[tuple[str, int, int]] = field(default_factory=list)


INJECTED: dict[str, Injected] = {}


async def poison_and_duplicates(run: ChaosRun, infra: Breakables) -> None:
    await run.wait_for("denoise", 0.3)
    injected = INJECTED.setdefault(run.batch_id, Injected())
    topics = run.topics.all_topics(run.config.settings().host_ips)
    windows: Counter[str] = Counter()
    producer = make_producer(run.config.bootstrap, "crash-poison")
    await producer.start()
    try:
        for topic in topics:
            for i, raw in enumerate(POISON):
                value = raw.replace(b"%s", run.batch_id.encode())
                # Keyed: a compacted topic (control) refuses a record without a key.
                key = f"poison-{i}".encode()
                meta = await producer.send_and_wait(topic, value, key=key)
                injected.poison.append((topic, meta.partition, meta.offset))
        # Duplicate uploads (2% of the files) and a second BatchClosed.
        for path in run.paths[len(run.paths) // 2 :][: max(1, run.files // 50)]:
            event = FileUploaded(
                batch_id=run.batch_id, file_name=path.name, audio_uri=path.resolve().as_uri()
            )
            await producer.send_and_wait(
                run.topics.uploads, encode(event), key=run.batch_id.encode()
            )
            windows["distribute"] += 1
        closed = BatchClosed(batch_id=run.batch_id, file_count=run.files)
        await producer.send_and_wait(run.topics.uploads, encode(closed), key=run.batch_id.encode())
        # Copies of events already on every stage topic, as a redelivery would make them.
        stage_topics = [t for t in topics if t not in (run.topics.uploads, run.topics.failed)]
        seen = [
            r
            for r in await read_to_end(run.config.bootstrap, stage_topics, run.config.partitions)
            if _is_batch_event(r.value, run.batch_id)
        ]
        for r in seen[:: max(1, len(seen) // 60)]:
            await producer.send_and_wait(r.topic, r.value, key=r.key)
            stage = stage_of_topic(r.topic, run.config.topic_prefix)
            windows[stage or "done"] += 1
    finally:
        await producer.stop()
    # A duplicate makes its stage, and possibly every later one, run once more.
    run.record(
        f"{len(injected.poison)} poison messages on {len(topics)} topics; duplicate events "
        f"{dict(windows)} (when denoise had 30%)",
        dict(windows),
    )


def _is_batch_event(value: bytes | None, batch_id: str) -> bool:
    try:
        return bool(json.loads(value or b"").get("batch_id") == batch_id)
    except (ValueError, AttributeError):
        return False


async def poison_dead_lettered(run: ChaosRun, outcome: Outcome) -> None:
    injected = INJECTED.pop(run.batch_id, Injected())
    async with run.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT sourceTopic, sourcePartition, sourceOffset, valueB64 FROM deadLetters")
            )
        ).all()
    letters = {(r.sourceTopic, r.sourcePartition, r.sourceOffset): r.valueB64 for r in rows}
    missing = [p for p in injected.poison if p not in letters]
    if missing:
        outcome.fail(f"{len(missing)} poison messages without a deadLetters row", missing)
    raw_kept = all(
        base64.b64decode(letters[p]) in {v.replace(b"%s", run.batch_id.encode()) for v in POISON}
        for p in injected.poison
        if p in letters
    )
    if not raw_kept:
        outcome.fail("a deadLetters row does not keep the poison message's raw bytes")
