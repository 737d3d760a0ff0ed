"""Tracker CPU per event: a 100,000-file batch against a 10,000-file batch.

`python -m bench.tracker_scale` (or `python -m bench --tracker-scale`). The tracker's cost per
event must not grow with the batch: a poll that recounts a touched batch's files (a GROUP BY
over fileDistribution) costs more the bigger the batch, and a 100,000-file batch would then
slow down as it goes.

For each size, the events a batch produces through the whole pipeline (upload, every stage's
completion with one successful attempt, triage skips, BatchClosed) are written to a fresh
topic prefix on the broker, in waves of files as the pipeline would make them, and then a
tracker (the service's own `run`, in this process, its own group and fresh database) applies
them. CPU is counted from the end of its first poll to the end of its last: this process's
(the tracker's, nothing else runs here meanwhile) and the database server's (MariaDB's whole
process: other work on the machine adds noise there). Ratio = big batch's CPU per event over
the small batch's.
"""

import argparse
import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.infra import delete_topics, fresh_database, new_run_id
from bench.procfs import own_cpu_seconds, pid_from_file, usage
from bench.report import Figure, Section, figure_table
from bench.stack import ROOT, Infra
from services.tracker.main import run as run_tracker
from services.tracker.settings import TrackerSettings
from shared.events import (
    Attempt,
    BatchClosed,
    Event,
    FileContext,
    FileStageCompleted,
    FileUploaded,
    TriageDecision,
    encode,
    file_key,
)
from shared.kafka import ensure_topics, make_producer
from shared.pipeline import PIPELINE, TRIAGE, output_topic, skipped_by, spec
from shared.topics import Topics

HOSTS = ("127.0.3.2", "127.0.3.3", "127.0.3.4", "127.0.3.5")
WAVE = 500  # files whose events are written together, stage after stage
SKIP_EVERY = 10  # one file in ten is triaged out (IVR-only), as in a real batch
SKIPPED = frozenset(row.name for row in skipped_by(TRIAGE, "skip"))
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def _attempt(stage: str, host: str | None, at: datetime) -> Attempt:
    return Attempt(
        number=1,
        host=host,
        ok=True,
        started_at=at,
        duration_ms=120.0,
        request={"stage": stage},
        response={"ok": True},
    )


def batch_events(batch_id: str, files: int) -> Iterator[tuple[int, Event]]:
    """(wave, event) of a whole batch's life, wave after wave of WAVE files."""
    for first in range(0, files, WAVE):
        names = [f"call_{i:07d}.wav" for i in range(first, min(files, first + WAVE))]
        at = T0 + timedelta(seconds=first)
        wave = first // WAVE
        contexts = {}
        for i, name in enumerate(names):
            uri = f"file:///calls/{batch_id}/{name}"
            yield wave, FileUploaded(batch_id=batch_id, file_name=name, audio_uri=uri)
            host = HOSTS[(first + i) % len(HOSTS)]
            contexts[name] = FileContext(audio_uri=uri, host=host)
            yield (
                wave,
                FileStageCompleted(
                    batch_id=batch_id,
                    file_name=name,
                    stage="distribute",
                    context=contexts[name],
                    completed_at=at,
                ),
            )
        for stage in (row.name for row in PIPELINE[1:]):
            for i, name in enumerate(names):
                ctx = contexts[name]
                skipped = (first + i) % SKIP_EVERY == 0
                if skipped and stage in SKIPPED:
                    continue
                update: dict[str, object] = {}
                if stage == "denoise":
                    update = {"denoised_uri": ctx.audio_uri, "duration_s": 200.0}
                elif stage == "ivr":
                    update = {"is_ivr": skipped}
                elif stage == "lid":
                    update = {"language": "en"}
                elif stage == "triage":
                    route = "skip" if skipped else "stt"
                    update = {"triage": TriageDecision(route=route, rule=None, reason="")}
                elif stage == "stt":
                    update = {"transcript": "hello thanks for calling about my account"}
                else:
                    update = {stage: {"summary": "billing question", "sentiment": "neutral"}}
                ctx = contexts[name] = ctx.model_copy(update=update)
                attempt_host = ctx.host if spec(stage).per_host else None
                yield (
                    wave,
                    FileStageCompleted(
                        batch_id=batch_id,
                        file_name=name,
                        stage=stage,
                        context=ctx,
                        attempts=(_attempt(stage, attempt_host, at),),
                        completed_at=at,
                    ),
                )
    yield files // WAVE, BatchClosed(batch_id=batch_id, file_count=files)


def topic_of(event: Event, topics: Topics) -> tuple[str, bytes]:
    """The topic and key each event travels with in the pipeline."""
    if isinstance(event, FileUploaded | BatchClosed):
        return topics.uploads, event.batch_id.encode()
    assert isinstance(event, FileStageCompleted)
    host = event.context.host or HOSTS[0]
    triage = event.context.triage
    route = triage.route if event.stage == TRIAGE and triage else None
    return output_topic(event.stage, topics, host, route), file_key(event.batch_id, event.file_name)


async def produce_batch(bootstrap: str, topics: Topics, batch_id: str, files: int) -> int:
    await ensure_topics(bootstrap, topics.all_topics(list(HOSTS)), partitions=4)
    producer = make_producer(bootstrap, f"{topics.prefix}-bench")
    await producer.start()
    sent = 0
    try:
        pending = []
        for _wave, event in batch_events(batch_id, files):
            topic, key = topic_of(event, topics)
            pending.append(await producer.send(topic, encode(event), key=key))
            sent += 1
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


@dataclass(frozen=True)
class ScaleRun:
    files: int
    events: int  # applied in the timed window (after the first poll)
    seconds: float
    polls: int
    tracker_cpu_s: float
    database_cpu_s: float | None

    @property
    def tracker_us(self) -> float:
        return 1e6 * self.tracker_cpu_s / self.events

    @property
    def database_us(self) -> float | None:
        return None if self.database_cpu_s is None else 1e6 * self.database_cpu_s / self.events

    @property
    def total_us(self) -> float:
        return self.tracker_us + (self.database_us or 0.0)


def database_pid() -> int | None:
    cache = Path(os.environ.get("COFI_CACHE", ROOT / ".cache"))
    return pid_from_file(cache / "mariadb" / "mariadbd.pid")


def _database_cpu(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return usage(pid).cpu_s
    except (OSError, ValueError):
        return None


async def track(infra: Infra, prefix: str, files: int, total: int, database_url: str) -> ScaleRun:
    settings = TrackerSettings(
        kafka_bootstrap_servers=infra.bootstrap,
        topic_prefix=prefix,
        gpu_hosts=",".join(HOSTS),
        database_url=database_url,
        tracker_group_id=f"{prefix}-bench-tracker",
    )
    stop = asyncio.Event()
    db_pid = database_pid()
    applied = polls = 0
    marks: list[tuple[float, int, float, float | None]] = []  # (time, events, cpu, db cpu)

    async def after_apply(records: Sequence[object]) -> None:
        nonlocal applied, polls
        applied += len(records)
        polls += 1
        mark = (time.monotonic(), applied, own_cpu_seconds(), _database_cpu(db_pid))
        if len(marks) < 2:
            marks.append(mark)
        else:
            marks[1] = mark
        if applied >= total:
            stop.set()

    task = asyncio.create_task(run_tracker(settings, stop, after_apply=after_apply))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, timeout=3600, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    stopped.cancel()
    await task
    if len(marks) < 2 or applied < total:
        raise RuntimeError(f"the tracker applied {applied} of {total} events")
    (t0, e0, c0, d0), (t1, e1, c1, d1) = marks
    db = None if d0 is None or d1 is None else d1 - d0
    return ScaleRun(files, e1 - e0, t1 - t0, polls, c1 - c0, db)


async def measure(infra: Infra, files: int, run_id: str) -> ScaleRun:
    prefix = f"bench{run_id}s{files}"
    topics = Topics(prefix)
    try:
        total = await produce_batch(infra.bootstrap, topics, f"{prefix}-batch", files)
        async with fresh_database(infra.database_server_url, f"bench_{prefix}") as url:
            return await track(infra, prefix, files, total, url)
    finally:
        await delete_topics(infra.bootstrap, prefix)


async def tracker_scale(
    infra: Infra, big: int = 100_000, small: int = 10_000, say: Callable[[str], None] = print
) -> Section:
    run_id = new_run_id()
    runs = []
    for files in (small, big):
        say(f"tracker at scale: producing and tracking a {files:,}-file batch")
        runs.append(await measure(infra, files, run_id))
    return scale_section(runs[0], runs[1])


def scale_section(small: ScaleRun, big: ScaleRun) -> Section:
    name = f"tracker CPU per event, {big.files:,}-file batch / {small.files:,}-file batch"
    figures = [
        Figure.at_most(name, big.total_us / small.total_us, "ratio", 1.2),
        Figure.info(
            "tracker process alone, CPU per event ratio", big.tracker_us / small.tracker_us, "ratio"
        ),
    ]
    for run in (small, big):
        figures.append(
            Figure.info(f"tracker CPU per event, {run.files:,} files", run.total_us, "us")
        )
    section = Section("7. Tracker CPU per event at scale", figures)
    section.details = [
        f"{run.files:,}-file batch: {run.events:,} events in {run.polls} polls, "
        f"{run.seconds:.1f} s ({run.events / run.seconds:,.0f} events/s); CPU per event: tracker "
        f"{run.tracker_us:.0f} us"
        + (
            f" + MariaDB {run.database_us:.0f} us (its whole process)"
            if run.database_us is not None
            else " (MariaDB's process not found: tracker only)"
        )
        for run in (small, big)
    ]
    section.details.append(
        "Events as the pipeline makes them (upload, distribute, denoise, ivr, lid, triage, "
        f"stt, llm1, llm2; one file in {SKIP_EVERY} triaged out), in waves of {WAVE} files; "
        "a tracker of its own (group, database) in the bench's process; CPU counted from the "
        "end of its first poll to the end of its last."
    )
    return section


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.tracker_scale", description=__doc__)
    p.add_argument("--files", type=int, default=100_000, help="the big batch (default 100,000)")
    p.add_argument("--small", type=int, default=10_000, help="the small batch (default 10,000)")
    p.add_argument(
        "--report",
        type=Path,
        default=ROOT / "reports" / "tracker-scale.md",
        help="where the figure's Markdown goes (default reports/tracker-scale.md)",
    )
    args = p.parse_args(argv)
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
    infra = Infra(
        bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        database_server_url=os.environ.get(
            "BENCH_DATABASE_URL", "mysql+asyncmy://cofi:cofi@127.0.0.1:3306/cofi"
        ),
    )
    section = asyncio.run(tracker_scale(infra, args.files, args.small))
    print(section.title)
    for figure in section.figures:
        print(f"  {figure.name}: {figure.value:.3g} {figure.unit}")
    for line in section.details:
        print(" ", line)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {section.title} ({stamp}, `python -m bench.tracker_scale`)", ""]
    lines += [*figure_table(section.figures), "", *section.details]
    args.report.write_text("\n".join(lines) + "\n")
    print(args.report)


if __name__ == "__main__":
    main()
