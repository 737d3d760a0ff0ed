"""Wiring one service's observability: metrics, readiness checks, probes, the HTTP endpoint.

A service's `run` builds an `Observability` from its settings, hands `metrics` views to its
runners and handlers, registers what readiness depends on (each consumer's broker, the
tracker's database), and runs inside `serving()`. With no `METRICS_PORT` nothing is served
and no probe calls anything; the counters still count, in memory.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from shared.metrics import Metrics
from shared.observability.consumers import ConsumerProbe, ConsumerView
from shared.observability.health import Heartbeat, Readiness
from shared.observability.http import ObservabilityServer
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

# A dependency that has not answered for this many refresh periods makes the service unready.
STALE_AFTER_REFRESHES = 3
# A call to the broker or the database that takes longer is abandoned as failed; a loaded
# machine answers slower than the refresh period, which must not read as an outage.
MIN_CALL_TIMEOUT_S = 5.0

Probe = Callable[[], Coroutine[Any, Any, None]]


async def keep_beating(
    call: Callable[[], Awaitable[None]], heartbeat: Heartbeat, interval_s: float
) -> None:
    """Call every `interval_s` until cancelled; each answer or error goes to the heartbeat."""
    timeout_s = max(interval_s * 2, MIN_CALL_TIMEOUT_S)
    while True:
        try:
            await asyncio.wait_for(call(), timeout=timeout_s)
            heartbeat.answered()
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            heartbeat.failed(f"no answer within {timeout_s:.1f}s")
        except Exception as exc:
            heartbeat.failed(f"{type(exc).__name__}: {str(exc)[:200]}")
        await asyncio.sleep(interval_s)


async def keep_refreshing(
    name: str, call: Callable[[], Awaitable[None]], interval_s: float
) -> None:
    """Call every `interval_s` until cancelled; a failure is logged once until it recovers."""
    timeout_s = max(interval_s * 2, MIN_CALL_TIMEOUT_S)
    failing = False
    while True:
        try:
            await asyncio.wait_for(call(), timeout=timeout_s)
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not failing:
                log.warning("refreshing %s failed: %s: %s", name, type(exc).__name__, exc)
            failing = True
        await asyncio.sleep(interval_s)


class Observability:
    def __init__(self, settings: CommonSettings, service: str) -> None:
        self.service = service
        self.metrics = Metrics()
        self.readiness = Readiness()
        self.host = settings.metrics_host
        self.port = settings.metrics_port or None
        self.refresh_s = settings.metrics_refresh_s
        self.server: ObservabilityServer | None = None
        self._probes: list[Probe] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def watch_consumer(self, name: str, view: ConsumerView) -> Heartbeat:
        """Ready only while this consumer's broker answers; its lag per partition is kept."""
        broker = self._heartbeat(f"broker ({name})")
        probe = ConsumerProbe(view, self.metrics.lag())
        self._add_probe(lambda: keep_beating(probe.refresh, broker, self.refresh_s))
        return broker

    def watch_database(self, ping: Callable[[], Awaitable[None]]) -> Heartbeat:
        """Ready only while the database answers; writes report to the returned heartbeat."""
        database = self._heartbeat("database")
        self._add_probe(lambda: keep_beating(ping, database, self.refresh_s))
        return database

    def refresh(
        self, name: str, call: Callable[[], Awaitable[None]], every_s: float | None = None
    ) -> None:
        """Call every `every_s` (default: the refresh period) while serving, for metrics only
        (readiness ignores it)."""
        self._add_probe(lambda: keep_refreshing(name, call, every_s or self.refresh_s))

    def _heartbeat(self, what: str) -> Heartbeat:
        heartbeat = Heartbeat(what, max_age_s=self.refresh_s * STALE_AFTER_REFRESHES)
        self.readiness.add(what, heartbeat.problem)
        return heartbeat

    def _add_probe(self, probe: Probe) -> None:
        self._probes.append(probe)
        if self.server is not None:  # registered while serving: start it now
            self._start(probe)

    def _start(self, probe: Probe) -> None:
        task = asyncio.create_task(probe())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Serve `/metrics`, `/healthz`, `/readyz` and run the probes while inside."""
        if self.port is None:
            yield
            return
        self.server = ObservabilityServer(self.metrics, self.readiness, self.host, self.port)
        await self.server.start()
        log.info(
            "%s serves /metrics, /healthz and /readyz on %s",
            self.service,
            self.server.url,
            extra={"service": self.service},
        )
        for probe in self._probes:
            self._start(probe)
        try:
            yield
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.stop()
            self.server = None
