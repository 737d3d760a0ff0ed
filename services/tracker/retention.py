"""Retention: call content older than one age is purged, whole batches older than another go.

`processing_logs.input_payload`/`output_payload` hold transcripts and LLM answers, and
`deadLetters.valueB64` the raw bytes of poison messages; every other column (status, errors,
hosts, timings) stays, so the dashboards' counts and rates do not change. A purged row stays
purged when the topics are replayed (rows are inserted once, by their keys). Run by the
tracker every `PAYLOAD_PURGE_INTERVAL_S` when `PAYLOAD_RETENTION_DAYS` is set, or at will
with `cofi purge --older-than 30d`.

Whole batches go too (`BATCH_RETENTION_DAYS`, `cofi purge --delete-batches --older-than 90d`):
every row of a batch that ended (Complete or Cancelled) before the cutoff, from each table. A
batch still open is never deleted, however old. A rebuild from the topics brings back what the
topics still hold, so keep the topics' retention shorter than the batches'.
"""

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Delete, Select, Table, Update, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.tracker.tables import (
    batch_execution_log,
    batch_status,
    dead_letters,
    file_distribution,
    processing_logs,
)
from shared.status import Status

log = logging.getLogger(__name__)

_AGE = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[dhms]?)\s*$")
_UNITS = {"d": "days", "": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `3600s` (a bare number is days)."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an age like 30d, 12h, 90m or 3600s")
    age = timedelta(**{_UNITS[match["unit"]]: float(match["n"])})
    if age <= timedelta(0):
        raise ValueError(f"{text!r}: the age must be more than zero")
    return age


@dataclass(frozen=True)
class Purged:
    attempts: int  # processing_logs rows whose payloads were emptied
    dead_letters: int  # deadLetters rows whose raw bytes were emptied


def cutoff_for(older_than: timedelta, now: datetime | None = None) -> datetime:
    """The tables' naive UTC time before which content goes."""
    return ((now or datetime.now(UTC)).astimezone(UTC) - older_than).replace(tzinfo=None)


async def purge_payloads(
    engine: AsyncEngine, older_than: timedelta, now: datetime | None = None, chunk: int = 1000
) -> Purged:
    """Null the content of rows older than `older_than`, `chunk` rows per transaction."""
    cutoff = cutoff_for(older_than, now)
    pl, dl = processing_logs.c, dead_letters.c
    attempts = await _in_chunks(
        engine,
        select(pl.id)
        .where(pl.startedAt < cutoff)
        .where(or_(pl.input_payload.is_not(None), pl.output_payload.is_not(None))),
        lambda ids: (
            update(processing_logs)
            .where(pl.id.in_(ids))
            .values(input_payload=None, output_payload=None)
        ),
        chunk,
    )
    letters = await _in_chunks(
        engine,
        select(dl.id).where(dl.createdAt < cutoff).where(dl.valueB64.is_not(None)),
        lambda ids: update(dead_letters).where(dl.id.in_(ids)).values(valueB64=None),
        chunk,
    )
    return Purged(attempts, letters)


async def delete_batches(
    engine: AsyncEngine, older_than: timedelta, now: datetime | None = None, chunk: int = 5000
) -> list[str]:
    """Delete every row of the batches that ended before `older_than`; returns their ids."""
    cutoff = cutoff_for(older_than, now)
    bs = batch_status.c
    ended_at = func.coalesce(bs.completedAt, bs.cancelledAt)
    async with engine.connect() as conn:
        found = await conn.scalars(
            select(bs.batchId)
            .where(bs.status.in_((Status.COMPLETE, Status.CANCELLED)))
            .where(ended_at < cutoff)
        )
        batches = list(found.all())
    for batch in batches:
        # The children first, a chunk per transaction; the batchStatus row last, so a delete
        # that stops half-way is found and finished by the next round.
        for table, column in (
            (processing_logs, processing_logs.c.batch_id),
            (batch_execution_log, batch_execution_log.c.batchId),
            (dead_letters, dead_letters.c.batchId),
            (file_distribution, file_distribution.c.batchId),
        ):
            ids = select(table.c.id).where(column == batch)
            await _in_chunks(engine, ids, _deleter(table), chunk)
        async with engine.begin() as conn:
            await conn.execute(delete(batch_status).where(bs.batchId == batch))
        log.info("deleted batch %s: it ended before %s", batch, cutoff)
    return batches


def _deleter(table: Table) -> Callable[[list[int]], Delete]:
    return lambda chosen: delete(table).where(table.c.id.in_(chosen))


async def _in_chunks(
    engine: AsyncEngine,
    find: Select[Any],
    empty: Callable[[list[int]], Update | Delete],
    chunk: int,
) -> int:
    total = 0
    while True:
        async with engine.begin() as conn:
            ids: list[int] = list((await conn.scalars(find.limit(chunk))).all())
            if not ids:
                return total
            await conn.execute(empty(ids))
        total += len(ids)


async def purge_periodically(
    engine: AsyncEngine,
    older_than: timedelta | None,
    interval_s: float,
    stop: asyncio.Event,
    batches_older_than: timedelta | None = None,
) -> None:
    """The tracker's task: purge now, then every `interval_s`, until `stop`."""
    while not stop.is_set():
        try:
            if batches_older_than is not None:
                await delete_batches(engine, batches_older_than)
            if older_than is None:
                purged = Purged(0, 0)
            else:
                purged = await purge_payloads(engine, older_than)
            if purged.attempts or purged.dead_letters:
                log.info(
                    "purged call content older than %s: %d attempts, %d dead letters",
                    older_than,
                    purged.attempts,
                    purged.dead_letters,
                )
        except Exception:  # a database outage: the next round tries again
            log.exception("purging old payloads failed; retrying in %.0fs", interval_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
