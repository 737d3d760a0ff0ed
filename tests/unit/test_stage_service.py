"""The stage services' run block: runners live and die together."""

import asyncio
from typing import Any

import pytest

from shared.observability.service import Observability
from shared.runtime.publisher import Publisher
from shared.runtime.stage_service import run_stage_runners
from shared.runtime.start_order import StartQueue
from shared.settings import CommonSettings

pytestmark = pytest.mark.unit


class FakeProducer:
    def __init__(self) -> None:
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True


def _publisher(producer: FakeProducer) -> Publisher:
    new: Any = lambda: producer  # noqa: E731  # a fake stands in for the Kafka producer
    return Publisher(new, service="test", dead_letter_topic="failed")


class Waits:
    """A runner (or the control reader) that runs until cancelled or stopped."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.consumer = object()
        self.waiting = StartQueue[object]()
        self.cancelled = False

    async def caught_up(self, stop: asyncio.Event) -> bool:
        return True  # as the control reader says once it read its topic to the end

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await stop.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Fails(Waits):
    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("runner broke")


async def test_one_failing_runner_cancels_the_others_and_the_service_exits() -> None:
    producer, control, healthy = FakeProducer(), Waits("control"), Waits("healthy")
    observability = Observability(CommonSettings(metrics_port=None), "test")
    run: Any = run_stage_runners  # fakes stand in for the Kafka clients
    with pytest.raises(ExceptionGroup) as raised:
        await asyncio.wait_for(
            run(
                "test",
                [healthy, Fails("broken")],
                _publisher(producer),
                control,
                observability,
                asyncio.Event(),
            ),
            timeout=10,
        )
    assert raised.group_contains(RuntimeError, match="runner broke")
    assert healthy.cancelled and control.cancelled
    assert producer.stopped


async def test_a_stop_ends_every_runner_and_stops_the_producer() -> None:
    producer, control, runner = FakeProducer(), Waits("control"), Waits("runner")
    observability = Observability(CommonSettings(metrics_port=None), "test")
    stop = asyncio.Event()
    run: Any = run_stage_runners
    task = asyncio.create_task(
        run("test", [runner], _publisher(producer), control, observability, stop)
    )
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    assert not runner.cancelled and not control.cancelled
    assert producer.stopped
