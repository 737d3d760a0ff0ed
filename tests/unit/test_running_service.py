"""The integration tests' `running` helper: a service that dies while the test waits on it
fails the test at once with the service's own error, not with the wait's timeout."""

import asyncio
import time

import pytest

from tests.kafka_helpers import wait_until
from tests.stage_helpers import running


class ServiceBroke(Exception):
    pass


async def test_a_service_failing_while_the_body_waits_ends_the_body_with_its_error() -> None:
    async def service(stop: asyncio.Event) -> None:
        await asyncio.sleep(0.05)
        raise ServiceBroke("the database went away")

    started = time.monotonic()
    with pytest.raises(ServiceBroke, match="database went away"):
        async with running(service):
            await wait_until(lambda: False, timeout_s=30, what="what the service never does")
    assert time.monotonic() - started < 10
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_service_stopped_at_the_end_of_the_body_is_not_an_error() -> None:
    stopped = asyncio.Event()

    async def service(stop: asyncio.Event) -> None:
        await stop.wait()
        stopped.set()

    async with running(service):
        await asyncio.sleep(0)
    assert stopped.is_set()


async def test_the_bodys_own_failure_is_kept() -> None:
    async def service(stop: asyncio.Event) -> None:
        await stop.wait()

    with pytest.raises(TimeoutError, match="never"):
        async with running(service):
            await wait_until(lambda: False, timeout_s=0.2, what="never")
