"""Routed events whose outputs await the broker's ack while the agent routes the next ones.

Awaiting each publish's ack before routing the next event made every event a produce request
of its own and the agent wait a round trip per event. The window keeps at most `size` such
publishes running: the producer batches their records, and an event is acknowledged to faust
by its own task once its outputs are written (faust commits only up to the first event not
acknowledged). So a kill -9 redoes at most the window plus what faust had not committed.
"""

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 30.0


class AckWindow:
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an ack window of {size}: at least 1")
        self.size = size
        self.tasks: set[asyncio.Task[None]] = set()
        self._room = asyncio.Semaphore(size)

    async def add(self, publish: Coroutine[Any, Any, None]) -> None:
        """Start `publish` once fewer than `size` run (the agent waits here, not per event)."""
        try:
            await self._room.acquire()
        except BaseException:
            publish.close()
            raise
        task = asyncio.create_task(publish)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._room.release()
        if not task.cancelled() and task.exception() is not None:
            # The publisher never raises for a refused output (it dead-letters): this is a
            # bug. The event stays unacknowledged, so no commit passes it.
            log.error("publishing a routed event failed", exc_info=task.exception())

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Let the running publishes finish (bounded), then cancel what is left."""
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
