"""A consumer's long poll: short only while records wait on the broker for it.

A consumer asks the broker again every `fetch_max_wait_ms`, and aiokafka's fetcher wakes on its
own timer besides: most of a control plane's CPU at a GPU's real speed (bench/FINDINGS.md, issue
21). The wait matters for one reason only: aiokafka keeps one fetch in flight per broker, and a
partition whose records were just taken is fetched again only once the others' poll returns.
So the poll follows where the consumer stands:

- **behind** (a partition's high-water mark lies beyond the last record the poll brought) and
  the records waiting for a slot would run out before a caught-up poll returns (their
  `Runway`): the configured short wait, so a look-ahead is topped up at once. Behind with a
  look-ahead that outlasts the caught-up wait (a backlog at a GPU's real speed, every slot
  held for seconds), the poll is caught up: a short one would only come back empty, ten
  times a second, over the partitions that have nothing;
- **caught up** (records fetched or held, none waiting): `caught_up_ms` (the stages pass
  `CONSUMER_CAUGHT_UP_FETCH_WAIT_MS`; `CAUGHT_UP_MS`, Kafka's own default, otherwise), and
  the fetcher's wake-ups as long;
- **idle** (nothing fetched or held for `after_s`): `idle_ms`, and the fetcher's wake-ups as
  long.

A record that arrives ends any of these waits (`fetch_min_bytes` is one byte). And whatever the
state, a fetch that leaves out a partition that delivered just now (its records not yet taken)
keeps the short wait, so that partition is asked again soon. A partition whose records stay
untaken (its consumer's slots and look-ahead are full) is not in the fetch, and neither its
state nor its records shorten the fetch of the others (`FetcherWait`).

aiokafka reads these from private attributes of its fetcher when it builds each fetch; when a
version lacks them, the poll keeps its configured length (tests/unit/test_idle_cost.py pins
the names).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

IDLE_AFTER_S = 2.0
IDLE_GETMANY_MS = 1_000
CAUGHT_UP_MS = 500
_WAIT = "_fetch_max_wait_ms"
_WAKE = "_fetcher_timeout"
_BUILD = "_get_actions_per_node"  # builds the next fetch of each broker
_PENDING = "_records"  # fetched records not yet taken, by partition


def set_fetch_wait(consumer: object, wait_ms: int) -> None:
    """From now on `consumer` (started) asks the broker every `wait_ms` when nothing comes;
    a version of aiokafka without the attribute keeps its configured wait."""
    fetcher = getattr(consumer, "_fetcher", None)
    if hasattr(fetcher, _WAIT):
        setattr(fetcher, _WAIT, wait_ms)


@dataclass(frozen=True)
class _Ask:
    wait_ms: int
    wake_s: float
    owns: Callable[[Any], bool] | None  # the poller's partitions (None: every one)


class FetcherWait:
    """The wait and wake-up of one aiokafka fetcher, set per fetch from what its pollers ask.

    A consumer shared by several stages (`shared_consumer`) has one fetch for all of them, so
    each fetch waits as short as the most pressed poller among those whose partitions it
    carries: a stage whose fetched records wait untaken (every slot and its look-ahead full)
    is not in the fetch, and does not shorten the others' polls."""

    def __init__(self, consumer: object, clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self.clock = clock
        self.configured: tuple[int, float] | None = None  # (wait ms, wake s), read once
        self.asks: dict[int, _Ask] = {}
        # Partitions whose fetched records are not yet taken: their result, and since when.
        self._untaken: dict[Any, tuple[object, float]] = {}

    @classmethod
    def of(cls, consumer: object, clock: Callable[[], float] = time.monotonic) -> "FetcherWait":
        """The consumer's shared one if it has one, else its own."""
        shared = getattr(consumer, "fetcher_wait", None)
        return shared if isinstance(shared, FetcherWait) else cls(consumer, clock)

    def _fetcher(self) -> Any:
        # aiokafka builds its fetcher in `start()`: looked up at each poll, not before.
        fetcher = getattr(self.consumer, "_fetcher", None)
        return fetcher if hasattr(fetcher, _WAIT) and hasattr(fetcher, _WAKE) else None

    def short(self) -> tuple[int, float] | None:
        """The fetcher's own wait and wake-up (None: no fetcher to tune)."""
        fetcher = self._fetcher()
        if fetcher is None:
            return None
        if self.configured is None:
            self.configured = (int(getattr(fetcher, _WAIT)), float(getattr(fetcher, _WAKE)))
            self._wrap_build(fetcher)
        return self.configured

    def ask(
        self,
        poller: object,
        wait_ms: int,
        wake_s: float,
        owns: Callable[[Any], bool] | None = None,
    ) -> None:
        self.asks[id(poller)] = _Ask(wait_ms, wake_s, owns)
        fetcher = self._fetcher()
        if fetcher is not None:
            setattr(fetcher, _WAIT, min(a.wait_ms for a in self.asks.values()))
            setattr(fetcher, _WAKE, min(a.wake_s for a in self.asks.values()))

    def wait_for(self, partitions: Any, untaken: Any) -> int | None:
        """The wait of a fetch built over the assigned `partitions`, those with `untaken`
        records left out: short while one of them was delivered just now (it is asked again
        soon, not after the others' long poll); else the shortest ask among the pollers whose
        partitions it carries (None: nothing to choose, the fetcher's own)."""
        if self.configured is None:
            return None
        short_ms, now = self.configured[0], self.clock()
        untaken_now: dict[Any, tuple[object, float]] = {}
        for tp in partitions:
            if tp in untaken:
                result = untaken[tp]
                seen = self._untaken.get(tp)
                untaken_now[tp] = seen if seen and seen[0] is result else (result, now)
        self._untaken = untaken_now
        if any(now - since < short_ms / 1000 for _, since in untaken_now.values()):
            return short_ms
        fetched = [tp for tp in partitions if tp not in untaken]
        waits = [
            a.wait_ms
            for a in self.asks.values()
            if a.owns is None or any(a.owns(tp) for tp in fetched)
        ]
        return min(waits) if waits else None

    def _wrap_build(self, fetcher: Any) -> None:
        """aiokafka builds each fetch (`_get_actions_per_node`) reading the wait from its
        fetcher: set it for that fetch, then put the pollers' back."""
        build = getattr(fetcher, _BUILD, None)
        if build is None or not hasattr(fetcher, _PENDING):
            return

        def build_fetches(assignment: Any) -> Any:
            standing = getattr(fetcher, _WAIT)
            wait_ms = self.wait_for(assignment.tps, getattr(fetcher, _PENDING))
            if wait_ms is None or wait_ms == standing:
                return build(assignment)
            setattr(fetcher, _WAIT, wait_ms)
            try:
                return build(assignment)
            finally:
                setattr(fetcher, _WAIT, standing)

        setattr(fetcher, _BUILD, build_fetches)


class Runway:
    """How long the records waiting for a slot last: as many as wait, each taking the recent
    time between two starts (at least the time since the last start, so that slots held
    long make a long runway). No start seen yet: none (the poll stays short)."""

    WEIGHT = 0.2  # of the newest gap in the running mean

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.last_start: float | None = None
        self.gap_s: float | None = None

    def started(self) -> None:
        now = self.clock()
        if self.last_start is not None:
            gap, mean = now - self.last_start, self.gap_s
            self.gap_s = gap if mean is None else mean + self.WEIGHT * (gap - mean)
        self.last_start = now

    def seconds(self, waiting: int) -> float:
        if waiting == 0 or self.gap_s is None or self.last_start is None:
            return 0.0
        return waiting * max(self.gap_s, self.clock() - self.last_start)


class IdlePoll:
    def __init__(
        self,
        consumer: object,
        clock: Callable[[], float],
        idle_ms: int,
        after_s: float = IDLE_AFTER_S,
        caught_up_ms: int = CAUGHT_UP_MS,
    ) -> None:
        self.fetch = FetcherWait.of(consumer, clock)
        # A view of a shared consumer: the partitions that are its own.
        self.owns: Callable[[Any], bool] | None = getattr(consumer, "owns", None)
        self.clock = clock
        self.idle_ms = idle_ms
        self.after_s = after_s
        self.caught_up_ms = caught_up_ms
        self.last_busy = clock()
        self.idle = False
        self.behind = False

    def polled(self, busy: bool, behind: bool = False, runway_s: float = 0.0) -> None:
        """After each poll: `busy` if it brought records or records are held; `behind` if
        more records wait on the broker than it brought; `runway_s`, how long the records
        waiting for a slot last (`Runway`)."""
        configured = self.fetch.short() if self.idle_ms > 0 else None
        if configured is None:
            self.behind = behind
            return
        short_ms, wake_s = configured
        caught_up_ms = max(short_ms, min(self.caught_up_ms, self.idle_ms))
        self.behind = behind and runway_s * 1000 < caught_up_ms
        now = self.clock()
        if busy:
            self.last_busy = now
            self.idle = False
            if self.behind:
                self.fetch.ask(self, short_ms, wake_s, self.owns)
            else:
                self.fetch.ask(self, caught_up_ms, max(wake_s, caught_up_ms / 1000), self.owns)
        elif not self.idle and now - self.last_busy >= self.after_s:
            self.idle = True
            idle_ms = max(short_ms, self.idle_ms)
            self.fetch.ask(self, idle_ms, max(wake_s, idle_ms / 1000), self.owns)

    def getmany_timeout_ms(self, busy_ms: int) -> int:
        """How long a poll waits here for records: up to a second once idle (a record ends
        the wait at once either way; what waits longer is a stop or a pause check)."""
        return max(busy_ms, IDLE_GETMANY_MS) if self.idle else busy_ms

    def recheck_s(self, behind_s: float) -> float:
        """With every slot held, how often to top the look-ahead up from what the fetcher
        holds: `behind_s` while records wait, else as often as a caught-up poll asks."""
        return behind_s if self.behind else max(behind_s, self.caught_up_ms / 1000)
