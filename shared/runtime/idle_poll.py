"""A consumer's long poll: short only while records wait on the broker for it.

A consumer asks the broker again every `fetch_max_wait_ms`, and aiokafka's fetcher wakes on its
own timer besides: most of a control plane's CPU at a GPU's real speed (bench/FINDINGS.md, issue
21). The wait matters for one reason only: aiokafka keeps one fetch in flight per broker, and a
partition whose records were just taken is fetched again only once the others' poll returns.
So the poll follows where the consumer stands:

- **behind** (a partition's high-water mark lies beyond the last record the poll brought):
  the configured short wait, so a look-ahead is topped up at once;
- **caught up** (records fetched or held, none waiting): at least `CAUGHT_UP_MS`, Kafka's own
  default, and the fetcher's wake-ups as long;
- **idle** (nothing fetched or held for `after_s`): `idle_ms`, and the fetcher's wake-ups as
  long.

A record that arrives ends any of these waits (`fetch_min_bytes` is one byte). And whatever the
state, a fetch that leaves a partition out (its fetched records not yet taken) keeps the short
wait, so a partition that just delivered a record is asked again soon.

aiokafka reads these from private attributes of its fetcher when it builds each fetch; when a
version lacks them, the poll keeps its configured length (tests/unit/test_idle_cost.py pins
the names).
"""

from collections.abc import Callable
from typing import Any

IDLE_AFTER_S = 2.0
IDLE_GETMANY_MS = 1_000
CAUGHT_UP_MS = 500
_WAIT = "_fetch_max_wait_ms"
_WAKE = "_fetcher_timeout"
_BUILD = "_get_actions_per_node"  # builds the next fetch of each broker
_PENDING = "_records"  # fetched records not yet taken, by partition


class FetcherWait:
    """The wait and wake-up of one aiokafka fetcher, set to the shortest its pollers ask.

    A consumer shared by several stages (`shared_consumer`) has one fetch for all of them:
    a stage behind keeps it short however idle the others are."""

    def __init__(self, consumer: object) -> None:
        self.consumer = consumer
        self.configured: tuple[int, float] | None = None  # (wait ms, wake s), read once
        self.asks: dict[int, tuple[int, float]] = {}

    @classmethod
    def of(cls, consumer: object) -> "FetcherWait":
        """The consumer's shared one if it has one, else its own."""
        shared = getattr(consumer, "fetcher_wait", None)
        return shared if isinstance(shared, FetcherWait) else cls(consumer)

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
            _short_while_partial(fetcher, self.configured[0])
        return self.configured

    def ask(self, poller: object, wait_ms: int, wake_s: float) -> None:
        self.asks[id(poller)] = (wait_ms, wake_s)
        fetcher = self._fetcher()
        if fetcher is not None:
            setattr(fetcher, _WAIT, min(wait for wait, _ in self.asks.values()))
            setattr(fetcher, _WAKE, min(wake for _, wake in self.asks.values()))


class IdlePoll:
    def __init__(
        self,
        consumer: object,
        clock: Callable[[], float],
        idle_ms: int,
        after_s: float = IDLE_AFTER_S,
        caught_up_ms: int = CAUGHT_UP_MS,
    ) -> None:
        self.fetch = FetcherWait.of(consumer)
        self.clock = clock
        self.idle_ms = idle_ms
        self.after_s = after_s
        self.caught_up_ms = caught_up_ms
        self.last_busy = clock()
        self.idle = False
        self.behind = False

    def polled(self, busy: bool, behind: bool = False) -> None:
        """After each poll: `busy` if it brought records or records are held; `behind` if
        more records wait on the broker than it brought."""
        self.behind = behind
        configured = self.fetch.short() if self.idle_ms > 0 else None
        if configured is None:
            return
        short_ms, wake_s = configured
        now = self.clock()
        if busy:
            self.last_busy = now
            self.idle = False
            if behind:
                self.fetch.ask(self, short_ms, wake_s)
            else:
                wait_ms = max(short_ms, min(self.caught_up_ms, self.idle_ms))
                self.fetch.ask(self, wait_ms, max(wake_s, wait_ms / 1000))
        elif not self.idle and now - self.last_busy >= self.after_s:
            self.idle = True
            self.fetch.ask(self, max(short_ms, self.idle_ms), max(wake_s, self.idle_ms / 1000))

    def getmany_timeout_ms(self, busy_ms: int) -> int:
        """How long a poll waits here for records: up to a second once idle (a record ends
        the wait at once either way; what waits longer is a stop or a pause check)."""
        return max(busy_ms, IDLE_GETMANY_MS) if self.idle else busy_ms

    def recheck_s(self, behind_s: float) -> float:
        """With every slot held, how often to top the look-ahead up from what the fetcher
        holds: `behind_s` while records wait, else as often as a caught-up poll asks."""
        return behind_s if self.behind else max(behind_s, self.caught_up_ms / 1000)


def _short_while_partial(fetcher: Any, short_ms: int) -> None:
    """Make a fetch that leaves a partition out short, whatever the wait set here.

    aiokafka leaves out of its next fetch every partition whose fetched records are not yet
    taken (`getmany`), and builds that fetch the moment the last one returns: so the fetch
    after each delivery waits on the other partitions only, and a second record of the
    delivering partition waits for it. Only a fetch over every partition may wait long."""
    build = getattr(fetcher, _BUILD, None)
    if build is None or not hasattr(fetcher, _PENDING):
        return

    def build_fetches(assignment: Any) -> Any:
        pending = getattr(fetcher, _PENDING)
        wait_ms = getattr(fetcher, _WAIT)
        if wait_ms <= short_ms or not any(tp in pending for tp in assignment.tps):
            return build(assignment)
        setattr(fetcher, _WAIT, short_ms)
        try:
            return build(assignment)
        finally:
            setattr(fetcher, _WAIT, wait_ms)

    setattr(fetcher, _BUILD, build_fetches)
