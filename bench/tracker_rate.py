"""Figure 3: how fast the tracker applies events, against raw inserts of the same rows.

A second tracker (its own consumer group, its own fresh database) reads the topics a batch
already filled, in the bench's own process so its database round trips can be counted. The
floor is asyncmy's `executemany` inserting the rows that tracker wrote, in as many
transactions as the tracker had polls: no folding, no upserts, no recounts.
"""

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncmy
from aiokafka.structs import ConsumerRecord
from asyncmy.connection import Connection
from sqlalchemy import Table, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.infra import end_offsets, fresh_database, reader
from bench.profiling import profiled
from bench.report import Figure, Section
from bench.stack import Infra
from services.tracker.main import run as run_tracker
from services.tracker.migrate import migrate
from services.tracker.settings import TrackerSettings
from services.tracker.tables import (
    batch_execution_log,
    batch_status,
    dead_letters,
    file_distribution,
    processing_logs,
)
from shared.topics import Topics

TABLES: tuple[Table, ...] = (
    batch_status,
    file_distribution,
    processing_logs,
    batch_execution_log,
    dead_letters,
)


@dataclass
class RoundTrips:
    """Commands sent to the database server (each waits for its answer)."""

    count: int = 0


@contextmanager
def counting_round_trips() -> Iterator[RoundTrips]:
    # Every command asyncmy sends (query, COMMIT, ping, prepared execute) goes through
    # Connection._execute_command and waits for one answer: one round trip each.
    trips = RoundTrips()
    connection: Any = Connection
    original = connection._execute_command

    async def counted(self: Any, command: Any, sql: Any) -> Any:
        trips.count += 1
        return await original(self, command, sql)

    connection._execute_command = counted
    try:
        yield trips
    finally:
        connection._execute_command = original


@dataclass(frozen=True)
class TrackerRun:
    events: int  # events applied after the first poll (the timed window)
    seconds: float
    polls: int
    round_trips: int  # within the timed window

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


async def run_second_tracker(
    infra: Infra, prefix: str, hosts: Sequence[str], database_url: str, total: int, group: str
) -> TrackerRun:
    settings = TrackerSettings(
        kafka_bootstrap_servers=infra.bootstrap,
        topic_prefix=prefix,
        gpu_hosts=",".join(hosts),
        database_url=database_url,
        tracker_group_id=group,
    )
    stop = asyncio.Event()
    applied = 0
    polls = 0
    first: tuple[float, int, int] | None = None  # (time, events, round trips) after poll 1
    last = (0.0, 0, 0)

    with counting_round_trips() as trips:

        async def after_apply(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
            nonlocal applied, polls, first, last
            applied += len(records)
            polls += 1
            now = (time.monotonic(), applied, trips.count)
            if first is None:
                first = now
            last = now
            if applied >= total:
                stop.set()

        task = asyncio.create_task(run_tracker(settings, stop, after_apply=after_apply))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopped}, timeout=600, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        stopped.cancel()
        await task  # re-raises whatever stopped the tracker early
    if first is None or last[1] == first[1]:
        raise RuntimeError(f"the tracker applied {applied} of {total} events in one poll or none")
    return TrackerRun(
        events=last[1] - first[1],
        seconds=last[0] - first[0],
        polls=polls,
        round_trips=last[2] - first[2],
    )


async def read_rows(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_async_engine(database_url)
    try:
        rows: dict[str, list[tuple[Any, ...]]] = {}
        async with engine.connect() as conn:
            for table in TABLES:
                columns = ", ".join(f"`{c.name}`" for c in table.c if c.name != "id")
                result = await conn.execute(text(f"SELECT {columns} FROM `{table.name}`"))
                rows[table.name] = [tuple(r) for r in result]
        return rows
    finally:
        await engine.dispose()


def chunks(rows: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    """`rows` cut into `parts` consecutive slices of near-equal size (some may be empty)."""
    size, extra = divmod(len(rows), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(rows[start:end])
        start = end
    return out


async def raw_insert_seconds(
    database_url: str, rows: dict[str, list[tuple[Any, ...]]], transactions: int
) -> float:
    url = make_url(database_url)
    conn = await asyncmy.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    statements = {}
    for table in TABLES:
        names = [c.name for c in table.c if c.name != "id"]
        columns = ", ".join(f"`{n}`" for n in names)
        marks = ", ".join(["%s"] * len(names))
        statements[table.name] = f"INSERT INTO `{table.name}` ({columns}) VALUES ({marks})"
    sliced = {name: chunks(table_rows, transactions) for name, table_rows in rows.items()}
    try:
        started = time.monotonic()
        async with conn.cursor() as cursor:
            for i in range(transactions):
                for name, parts in sliced.items():
                    if parts[i]:
                        await cursor.executemany(statements[name], parts[i])
                await conn.commit()
        return time.monotonic() - started
    finally:
        conn.close()


async def tracker_throughput(
    infra: Infra,
    prefix: str,
    hosts: Sequence[str],
    run_id: str,
    batch_files: int,
    profile_to: Path | None = None,
) -> Section:
    topics = Topics(prefix).all_topics(list(hosts))
    async with reader(infra.bootstrap) as consumer:
        total = sum((await end_offsets(consumer, topics)).values())
    server = infra.database_server_url
    async with fresh_database(server, f"bench_{run_id}_tracker") as tracked_url:
        with profiled(profile_to) if profile_to else nullcontext():
            tracker = await run_second_tracker(
                infra, prefix, hosts, tracked_url, total, f"{prefix}-bench-tracker"
            )
        rows = await read_rows(tracked_url)
    async with fresh_database(server, f"bench_{run_id}_raw") as raw_url:
        await migrate(raw_url)
        raw_s = await raw_insert_seconds(raw_url, rows, tracker.polls)
    raw_rate = total / raw_s
    max_batch = TrackerSettings().tracker_max_batch
    ratio = tracker.events_per_s / raw_rate
    trips_per_100 = 100 * tracker.round_trips / tracker.events
    per_poll = tracker.round_trips / max(1, tracker.polls - 1)
    row_counts = ", ".join(f"{name} {len(r):,}" for name, r in rows.items())
    section = Section(
        "3. Tracker throughput",
        [
            Figure.at_least("tracker throughput / raw executemany", ratio, "ratio", 0.5),
            Figure.info("tracker events applied per second", tracker.events_per_s, "events/s"),
            Figure.info("raw executemany rate (same rows)", raw_rate, "events/s"),
            Figure.info("tracker DB round trips per 100 events", trips_per_100, "round trips"),
        ],
    )
    section.details = [
        f"A second tracker (own group, own database, in the bench's process) read the "
        f"pre-filled topics of the {batch_files:,}-file batch and its warm-up: {total:,} events "
        f"in {tracker.polls} polls (TRACKER_MAX_BATCH={max_batch}). Timed from the end of its "
        f"first poll to the end of its last: {tracker.events:,} events in "
        f"{tracker.seconds:.1f} s = {tracker.events_per_s:,.0f} events/s, "
        f"{tracker.round_trips:,} database round trips "
        f"({trips_per_100:.1f} per 100 events, {per_poll:.1f} per poll).",
        f"Floor: the rows that tracker wrote ({row_counts}) inserted with asyncmy "
        f"`executemany` into a fresh database in {tracker.polls} transactions (one slice of "
        f"each table per transaction): {raw_s:.1f} s = {raw_rate:,.0f} events/s.",
    ]
    return section
