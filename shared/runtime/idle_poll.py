"""A consumer's long poll, lengthened while it has nothing to do.

An idle consumer asks the broker again every `fetch_max_wait_ms`: the GPU stages poll short
(a drained partition's look-ahead waits for the others' poll to return), which is most of an
idle control plane's CPU (bench/FINDINGS.md, issue 21). With no record fetched and none held
for `after_s`, the consumer's next fetches wait `idle_ms` instead (0: never). No record waits
longer for it: a fetch asks for one byte (`fetch_min_bytes`), so the broker answers as soon
as a record arrives, and the first fetch that brings one puts the short poll back.

aiokafka reads its fetch wait when it builds each fetch request, from a private attribute of
its fetcher; when a version lacks it, the poll keeps its configured length.
"""

from collections.abc import Callable
from typing import Any

IDLE_AFTER_S = 2.0
IDLE_GETMANY_MS = 1_000
_ATTRIBUTE = "_fetch_max_wait_ms"


class IdlePoll:
    def __init__(
        self,
        consumer: object,
        clock: Callable[[], float],
        idle_ms: int,
        after_s: float = IDLE_AFTER_S,
    ) -> None:
        self.consumer = consumer
        self.clock = clock
        self.idle_ms = idle_ms
        self.after_s = after_s
        self.last_busy = clock()
        self.idle = False
        self._busy_ms = 0  # the configured wait, read when the poll first lengthens

    def _fetcher(self) -> Any:
        fetcher = getattr(self.consumer, "_fetcher", None)
        return fetcher if hasattr(fetcher, _ATTRIBUTE) else None

    def polled(self, busy: bool) -> None:
        """After each poll: `busy` if it brought records or records are held."""
        now = self.clock()
        if busy:
            self.last_busy = now
            if self.idle:
                self._set_wait(self._busy_ms)
                self.idle = False
        elif self.idle_ms > 0 and not self.idle and now - self.last_busy >= self.after_s:
            fetcher = self._fetcher()
            if fetcher is None:
                return
            self._busy_ms = int(getattr(fetcher, _ATTRIBUTE))
            if self._busy_ms >= self.idle_ms:
                return  # already polls at least this long
            self._set_wait(self.idle_ms)
            self.idle = True

    def getmany_timeout_ms(self, busy_ms: int) -> int:
        """How long a poll waits here for records: up to a second once idle (a record ends
        the wait at once either way; what waits longer is a stop or a pause check)."""
        return max(busy_ms, IDLE_GETMANY_MS) if self.idle else busy_ms

    def _set_wait(self, wait_ms: int) -> None:
        fetcher = self._fetcher()
        if fetcher is not None:
            setattr(fetcher, _ATTRIBUTE, wait_ms)
