"""How long to wait before the next try: the one backoff formula of every loop that retries.

Exponential (`first_delay_s`, times `factor` per failure), capped at `max_delay_s`, with an
optional jitter: the random share of the delay that spreads many waiters apart, so a broker
or a model host that comes back is not hit by every waiter at the same instant.

- `jitter=0.0`: always the ceiling (infrastructure steps: `shared.keep_trying`);
- `jitter=1.0`: "full jitter", anywhere in [0, ceiling] (model calls: `shared.retry`);
- `jitter=0.5`: "equal jitter", in [ceiling/2, ceiling] (the breaker's probes).

Pure: the random source is passed in, so tests are deterministic.
"""

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first_delay_s: float = 0.25
    max_delay_s: float = 5.0
    factor: float = 2.0  # 1.0 polls at a steady pace
    jitter: float = 0.0  # the share of each delay drawn at random, 0..1

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"backoff jitter must be within 0..1, not {self.jitter}")
        if self.first_delay_s < 0 or self.max_delay_s < 0 or self.factor < 1.0:
            raise ValueError(f"backoff needs delays >= 0 and a factor >= 1: {self}")

    def ceiling(self, failures: int) -> float:
        """The longest wait after `failures` failures in a row (the first wait: failures=0)."""
        if self.factor == 1.0 or self.first_delay_s == 0.0:
            return min(self.first_delay_s, self.max_delay_s)
        # Past the cap the power would only grow (and overflow a float): stop computing it.
        cap_at = math.log(max(self.max_delay_s, 1e-12) / self.first_delay_s, self.factor)
        if failures >= cap_at:
            return self.max_delay_s
        return min(self.max_delay_s, self.first_delay_s * self.factor ** max(failures, 0))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """The wait after `failures` failures in a row; `rng` draws the jitter."""
        ceiling = self.ceiling(failures)
        if self.jitter == 0.0:
            return ceiling
        draw = (rng or _RNG).random()
        return ceiling * (1.0 - self.jitter) + ceiling * self.jitter * draw

    def waits(self, rng: random.Random | None = None) -> "Waits":
        return Waits(self, rng)


_RNG = random.Random()


@dataclass
class Waits:
    """The delays of one run of failures: `next()` after each failure, `reset()` on success."""

    backoff: Backoff
    rng: random.Random | None = None
    failures: int = 0

    def next(self) -> float:
        delay = self.backoff.delay(self.failures, self.rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
