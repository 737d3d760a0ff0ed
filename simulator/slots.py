"""Bounded concurrency with a bounded FIFO queue, resizable at runtime.

asyncio.Semaphore cannot be resized and cannot tell how many are waiting, and Python 3.11's
Condition can lose a wake-up when a waiter is cancelled; so slots are handed over explicitly: a
release gives its slot straight to the oldest waiter's future.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    def __init__(self, capacity: int, queue_limit: int) -> None:
        self.capacity = capacity
        self.queue_limit = queue_limit
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> bool:
        """Take a slot, waiting in line if needed; False if the line is full (answer 429)."""
        if self.active < self.capacity and not self._waiters:
            self.active += 1
            return True
        if len(self._waiters) >= self.queue_limit:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # The slot was handed to us just as we were cancelled: pass it on.
                self.release()
            else:
                self._waiters.remove(fut)
            raise
        return True

    def release(self) -> None:
        self.active -= 1
        self._hand_over()

    def resize(self, capacity: int | None = None, queue_limit: int | None = None) -> None:
        if capacity is not None:
            self.capacity = capacity
        if queue_limit is not None:
            self.queue_limit = queue_limit
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiters and self.active < self.capacity:
            fut = self._waiters.popleft()
            if not fut.done():
                self.active += 1
                fut.set_result(None)
