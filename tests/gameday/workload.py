"""The game day's batches: back to back and overlapping, of mixed sizes, heavy-tailed calls
(`cli.audio.CallLengths`), some cancelled, some with a late upload, some retried; all drawn
from the seed. What a user or the upload system does, never a repair."""

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text

from cli.audio import CallLengths
from cli.dead_letters import cancellation, publish
from cli.retry_batch import retry_batch
from cli.upload import submit
from shared.events import FileUploaded, encode
from shared.kafka import make_producer
from tests.crash.audio import make_call_audio
from tests.crash.infra import CACHE
from tests.gameday.day import Batch, Day

# (files, weight): mostly small and medium batches, now and then a big one.
SIZES = ((12, 3), (40, 4), (120, 3), (300, 1))
PLANS = (("plain", 5), ("cancel", 1), ("late", 1), ("retry", 1))
# A new batch every 10-40 s: several are in flight at once.
GAP_S = (10.0, 40.0)
POOL_FILES = 600
POOL_CORRUPT = 6  # undecodable: they fail with their own reason ("undecodable")
POOL_SHORT = 12


@dataclass(frozen=True)
class WorkloadSettings:
    duration_s: float
    # Submissions stop this long before the end, so the last batches finish with the faults.
    quiet_tail_s: float = 45.0
    lengths: CallLengths = field(default_factory=CallLengths)


def audio_pool(lengths: CallLengths) -> list[Path]:
    folder = CACHE / "gameday-audio" / f"{POOL_FILES}-{POOL_CORRUPT}-{POOL_SHORT}-{lengths.label()}"
    return make_call_audio(folder, POOL_FILES, POOL_CORRUPT, POOL_SHORT, lengths)


def _weighted(day: Day, table: tuple[tuple[object, int], ...]) -> object:
    values, weights = zip(*table, strict=True)
    return day.rng.choices(values, weights)[0]


async def run_workload(day: Day, settings: WorkloadSettings) -> None:
    """Submit batches until the quiet tail; each batch's plan (cancel, late upload, retry)
    runs as its own task."""
    n = 0
    last = settings.duration_s - settings.quiet_tail_s
    while day.now() < last:
        size = int(str(_weighted(day, SIZES)))
        plan = str(_weighted(day, PLANS))
        paths = day.rng.sample(day.audio, min(size, len(day.audio)))
        if plan == "retry":  # something to retry: an undecodable call fails at denoise
            paths = [*day.audio[:2], *[p for p in paths if p not in day.audio[:2]]]
        n += 1
        batch = Batch(f"gd{day.seed}-{n:03d}-{plan}", [p.name for p in paths], day.now(), plan)
        day.batches[batch.batch_id] = batch
        day.step("workload", f"submit {batch.batch_id} ({len(paths)} files)")
        await submit(day.config.bootstrap, day.run.topics, batch.batch_id, paths)
        if plan != "plain":
            delay = day.rng.uniform(2.0, 12.0)  # drawn here: the plan does not hang on timing
            day.follow_ups.append(asyncio.create_task(_follow_plan(day, batch, paths, delay)))
        gap = day.rng.uniform(*GAP_S)
        await asyncio.sleep(min(gap, max(0.0, last - day.now())))


async def _follow_plan(day: Day, batch: Batch, paths: list[Path], delay: float) -> None:
    if batch.plan == "cancel":
        await asyncio.sleep(delay)
        day.step("workload", f"cancel {batch.batch_id}")
        output = cancellation(batch.batch_id, "game day: cancelled by its user", day.run.topics)
        await publish(day.config.bootstrap, [output])
        return
    if not await wait_finished(day, batch, timeout_s=3600):
        return
    if batch.plan == "late":
        late = FileUploaded(
            batch_id=batch.batch_id,
            file_name=f"late_{batch.batch_id}.wav",
            audio_uri=paths[-1].resolve().as_uri(),
        )
        batch.late_files.append(late.file_name)
        day.step("workload", f"late upload {late.file_name} into {batch.batch_id}")
        producer = make_producer(day.config.bootstrap, "gameday-late-upload")
        await producer.start()
        try:
            await producer.send_and_wait(
                day.run.topics.uploads, encode(late), key=batch.batch_id.encode()
            )
        finally:
            await producer.stop()
    elif batch.plan == "retry":
        # What `cofi retry BATCH` does, through the same function.
        done = await retry_batch(day.config.bootstrap, day.run.topics, batch.batch_id)
        batch.retried = len(done["sent"])
        day.step("workload", f"cofi retry {batch.batch_id} ({batch.retried} files)")


async def batch_state(day: Day, batch_id: str) -> str:
    """The batch's `status` in batchStatus ("" while it has no row or the database is out)."""
    try:
        async with day.run.engine.connect() as conn:
            found = await conn.execute(
                text("SELECT status FROM batchStatus WHERE batchId = :b"), {"b": batch_id}
            )
            return str(found.scalar_one_or_none() or "")
    except Exception:
        return ""


async def wait_finished(day: Day, batch: Batch, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout_s
    while loop.time() < until:
        if await batch_state(day, batch.batch_id) in ("Complete", "Cancelled"):
            return True
        await asyncio.sleep(1.0)
    return False
