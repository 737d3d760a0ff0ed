"""The tracker's side: timing each database write, and pinging the database when idle."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.metrics import SinkMetrics
from shared.observability.health import Heartbeat

R = TypeVar("R")


def observed_sink(
    apply: Callable[[Sequence[R]], Awaitable[None]],
    metrics: SinkMetrics,
    database: Heartbeat | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[Sequence[R]], Awaitable[None]]:
    """`apply` timed, its batch size counted, its answer given to the database's heartbeat."""

    async def observed(records: Sequence[R]) -> None:
        started = clock()
        try:
            await apply(records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.written(len(records), clock() - started, ok=False)
            if database is not None:
                database.failed(f"last write failed: {type(exc).__name__}: {str(exc)[:200]}")
            raise
        metrics.written(len(records), clock() - started, ok=True)
        if database is not None:
            database.answered()

    return observed


def database_ping(engine: AsyncEngine) -> Callable[[], Awaitable[None]]:
    async def ping() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return ping
