"""Retention of call content: payloads older than the retention are purged.

`processing_logs.input_payload`/`output_payload` hold transcripts and LLM answers, and
`deadLetters.valueB64` the raw bytes of poison messages; every other column (status, errors,
hosts, timings) stays, so the dashboards' counts and rates do not change. A purged row stays
purged when the topics are replayed (rows are inserted once, by their keys). Run by the
tracker every `PAYLOAD_PURGE_INTERVAL_S` when `PAYLOAD_RETENTION_DAYS` is set, or at will
with `cofi purge --older-than 30d`.
"""

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, Update, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.tracker.tables import dead_letters, processing_logs

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


async def _in_chunks(
    engine: AsyncEngine,
    find: Select[Any],
    empty: Callable[[list[int]], Update],
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
    engine: AsyncEngine, older_than: timedelta, interval_s: float, stop: asyncio.Event
) -> None:
    """The tracker's task: purge now, then every `interval_s`, until `stop`."""
    while not stop.is_set():
        try:
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
