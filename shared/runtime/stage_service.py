"""Run a model-calling service's stage runners (gpu_stage, llm_stage) until told to stop.

Together, under one `TaskGroup`: if one runner (or the control-topic reader) fails, the
others are cancelled and the service exits, rather than running on without it.
"""

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from aiokafka import AIOKafkaConsumer

from shared.observability.consumers import AiokafkaView
from shared.observability.service import Observability
from shared.runtime.control import ControlView
from shared.runtime.publisher import Publisher
from shared.runtime.stage_runner import StageRunner


async def run_stage_runners(
    service: str,
    runners: Sequence[StageRunner[Any]],
    publisher: Publisher,
    control: ControlView,
    observability: Observability,
    stop: asyncio.Event,
) -> None:
    for runner in runners:
        consumer = cast(AIOKafkaConsumer, runner.consumer)  # the services run aiokafka's
        view = AiokafkaView(consumer, not_started=runner.waiting.count)
        observability.watch_consumer(runner.name, view)
    async with observability.serving():
        if not await publisher.start(stop):
            return
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(control.run(stop))
                # Cancels and drains written before this start count from the first record.
                if not await control.caught_up(stop):
                    return
                for runner in runners:
                    group.create_task(runner.run(stop))
        finally:
            await publisher.stop()
