"""What a crash scenario is: what it breaks, what it runs on, and what it checks beyond the
common invariants (the scenarios themselves: `scenarios*.py`)."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from cli.audio import CallLengths
from tests.crash.harness import ChaosRun
from tests.crash.infra import PrivateCluster, PrivateKafka, PrivateMariaDB
from tests.crash.invariants import Outcome
from tests.crash.lifecycle import Infra


@dataclass
class Breakables:
    """The infrastructure a scenario may break, and what everything else runs on."""

    shared: Infra
    kafka: PrivateKafka | None = None
    mariadb: PrivateMariaDB | None = None
    cluster: PrivateCluster | None = None


Inject = Callable[[ChaosRun, Breakables], Awaitable[None]]


ExtraCheck = Callable[[ChaosRun, Outcome], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    inject: Inject
    runs_on: Literal["shared", "private-kafka", "private-mariadb", "private-cluster"] = "shared"
    extra_env: dict[str, str] = field(default_factory=dict)
    before_submit: Callable[[ChaosRun], Awaitable[None]] | None = None
    extra_check: ExtraCheck | None = None
    # Model latency (simulator scale) when the scenario needs a batch that lasts: a rolling
    # restart takes ~20 s, longer than a whole 1,000-file batch at instant latency on an idle
    # machine; 2.0 is about the seed's real model latencies doubled.
    latency_scale: float | None = None
    # Assert the healthy hosts keep >= 0.9 of their throughput in a run without the fault.
    isolation: bool = False
    # Calls of these heavy-tailed lengths instead of the suite's two-second calls.
    call_lengths: CallLengths | None = None


async def hold(run: ChaosRun, seconds: float) -> None:
    """Keep a fault on for `seconds`: an outage's length is the fault itself, so this one
    wait is on the clock (every service must stay alive meanwhile)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while loop.time() < until:
        run.assert_alive()
        await asyncio.sleep(min(1.0, max(0.0, until - loop.time())))
