"""The wiring every model-calling service shares (gpu_stage, llm_stage), written once.

A service has one observability endpoint, one publisher (one producer, replaced if it breaks
for good) and one reader of the control topic; each of its (stage, host) consumers gets a
circuit breaker (a readiness check and `cofi_stage_circuit_open`), a retry policy, and a
`StageRunner` over the stage's input topic. The services' `main` modules only say what
differs: the model call, the handler, the slots and the start order.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.breaker import BreakerPolicy, CircuitBreaker
from shared.events import FileStageCompleted
from shared.kafka import make_consumer, make_producer
from shared.metrics import StageMetrics
from shared.model_stage import decoder_for
from shared.observability.service import Observability
from shared.pipeline import input_topic
from shared.runtime.control import ControlView
from shared.runtime.publisher import Publisher
from shared.runtime.shared_consumer import StageView
from shared.runtime.stage_runner import Handler, RunnerSettings, StageRunner, Work
from shared.runtime.stage_service import run_stage_runners
from shared.settings import CommonSettings


@dataclass(frozen=True)
class Guarded:
    """A stage consumer's breaker and the metrics bound to its stage and host."""

    breaker: CircuitBreaker
    metrics: StageMetrics


class ModelStageWiring:
    def __init__(self, settings: CommonSettings, service: str, drain_timeout_s: float) -> None:
        self.settings = settings
        self.service = service
        self.drain_timeout_s = drain_timeout_s
        self.observability = Observability(settings, service)
        self.publisher = Publisher(
            lambda: make_producer(settings.kafka, service),
            service=service,
            dead_letter_topic=settings.topics.failed,
            payload_limit=settings.event_payload_max_bytes,
            metrics=self.observability.metrics.publish(service),
        )
        self.observability.readiness.add(f"publisher ({service})", self.publisher.problem)
        self.control = ControlView(
            settings.kafka, settings.topics.control, settings.control_fetch_wait_ms
        )
        self.runners: list[StageRunner[Any]] = []

    def guard(
        self,
        stage: str,
        host: str,
        *,
        max_probe_s: float,
        probe: Callable[[], Awaitable[bool]],
    ) -> Guarded:
        """The breaker of `stage` on `host`, reported in readiness and metrics."""
        metrics = self.observability.metrics.stage(stage, host)
        breaker = CircuitBreaker(
            stage,
            host,
            BreakerPolicy(max_probe_s=max_probe_s),
            probe=probe,
            on_change=metrics.circuit,
        )
        self.observability.readiness.add(f"circuit ({stage}@{host})", breaker.problem)
        return Guarded(breaker, metrics)

    def add_runner(
        self,
        stage: str,
        *,
        name: str,
        group: str,
        handle: Handler[FileStageCompleted],
        metrics: StageMetrics,
        max_in_flight: int,
        paused: Callable[[], bool],
        host: str | None = None,
        priority: Callable[[FileStageCompleted], float] | None = None,
        lookahead: int = 0,
        fetch_max_wait_ms: int = 500,
        consumer: StageView | None = None,
    ) -> StageRunner[FileStageCompleted]:
        """A runner over `stage`'s input topic (of `host`, for a GPU stage), with a consumer
        of its own in `group`, or `consumer`: its view of one the process shares."""
        settings = self.settings
        runner: StageRunner[FileStageCompleted] = StageRunner(
            RunnerSettings(
                name=name,
                topics=(input_topic(stage, settings.topics, host),),
                max_in_flight=max_in_flight,
                lookahead=lookahead,
                drain_timeout_s=self.drain_timeout_s,
                offset_metadata_max_bytes=settings.offset_metadata_max_bytes,
                idle_fetch_wait_ms=settings.consumer_idle_fetch_wait_ms,
                caught_up_fetch_wait_ms=settings.consumer_caught_up_fetch_wait_ms,
            ),
            consumer
            or make_consumer(settings.kafka, group, name, fetch_max_wait_ms=fetch_max_wait_ms),
            self.publisher,
            Work(decode=decoder_for(stage), handle=handle, priority=priority, paused=paused),
            metrics=metrics,
            read_committed=None if consumer is None else consumer.read_committed,
        )
        self.runners.append(runner)
        return runner

    async def run(self, stop: asyncio.Event, runners: Sequence[StageRunner[Any]] = ()) -> None:
        """Run the runners added (or `runners`) with the control reader until `stop`."""
        await run_stage_runners(
            self.service,
            list(runners) or self.runners,
            self.publisher,
            self.control,
            self.observability,
            stop,
        )
