"""Infrastructure steps are retried with capped backoff until they work, stop, or time out."""

import asyncio

import pytest

from shared.keep_trying import Backoff, keep_trying
from tests.unit.test_retry import Clock

pytestmark = pytest.mark.unit


class Flaky:
    """Fails `failures` times with `error`, then works."""

    def __init__(self, failures: int, error: BaseException) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error


async def test_retries_with_capped_exponential_backoff_until_it_works() -> None:
    clock, step = Clock(), Flaky(5, ConnectionError("down"))
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await clock.sleep(seconds)

    done = await keep_trying(
        step,
        retry_on=ConnectionError,
        what="test",
        backoff=Backoff(first_delay_s=0.5, max_delay_s=2.0),
        clock=clock,
        sleep=sleep,
    )
    assert done is True
    assert step.calls == 6
    assert delays == [0.5, 1.0, 2.0, 2.0, 2.0]


async def test_other_errors_propagate_at_once() -> None:
    step = Flaky(1, KeyError("bug"))
    with pytest.raises(KeyError):
        await keep_trying(step, retry_on=ConnectionError, what="test")
    assert step.calls == 1


async def test_the_last_error_propagates_once_the_deadline_would_pass() -> None:
    clock, step = Clock(), Flaky(100, ConnectionError("still down"))
    with pytest.raises(ConnectionError, match="still down"):
        await keep_trying(
            step,
            retry_on=ConnectionError,
            what="test",
            backoff=Backoff(first_delay_s=1.0, factor=1.0),
            deadline_s=3.5,
            clock=clock,
            sleep=clock.sleep,
        )
    assert step.calls == 4  # at 0, 1, 2 and 3 s; a fifth at 4 s would pass the deadline


async def test_a_stop_while_waiting_returns_false() -> None:
    stop = asyncio.Event()
    failures: list[BaseException] = []

    async def step() -> None:
        stop.set()
        raise ConnectionError("down")

    done = await keep_trying(
        step,
        retry_on=ConnectionError,
        what="test",
        backoff=Backoff(first_delay_s=60.0),
        stop=stop,
        on_failure=failures.append,
    )
    assert done is False
    assert len(failures) == 1
