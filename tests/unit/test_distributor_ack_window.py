"""The distributor's ack window: routed events publish in the background, at most `size` at a
time, and a stopping agent lets them finish (services/distributor/ack_window.py)."""

import asyncio

import pytest

from services.distributor.ack_window import AckWindow

pytestmark = pytest.mark.unit


async def test_at_most_size_publishes_run_and_the_next_waits_for_room() -> None:
    window = AckWindow(2)
    gates = [asyncio.Event() for _ in range(3)]
    done: list[int] = []

    async def publish(n: int) -> None:
        await gates[n].wait()
        done.append(n)

    await window.add(publish(0))
    await window.add(publish(1))
    third = asyncio.create_task(window.add(publish(2)))
    await asyncio.sleep(0.01)
    assert not third.done() and len(window.tasks) == 2  # the agent waits: the window is full
    gates[1].set()  # acks may come back out of order
    await asyncio.wait_for(third, 1)
    assert done == [1] and len(window.tasks) == 2
    gates[0].set()
    gates[2].set()
    await window.drain()
    assert sorted(done) == [0, 1, 2] and not window.tasks


async def test_drain_cancels_what_outlasts_its_timeout() -> None:
    window = AckWindow(4)
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    await window.add(forever())
    await started.wait()
    await window.drain(timeout_s=0.01)
    await asyncio.sleep(0)  # the done callbacks
    assert not window.tasks


def test_a_window_holds_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AckWindow(0)
