"""The event loop every service's main runs on: asyncio's, or uvloop on request.

uvloop makes each Kafka request and HTTP call cheaper in CPU (bench/FINDINGS.md, issue 21),
but it is not the default: with it, aiokafka does not survive a broker's kill -9. A write on a
transport the broker closed raises uvloop's RuntimeError ("unable to perform operation on
<TCPTransport closed=True ...>") out of `getmany`, where asyncio's loop raises the
ConnectionError aiokafka handles; a stage then exits, or hangs with its consumers never
rejoining (tests/crash `kill_broker`, 4 runs of 4 on 2026-12-07). `COFI_EVENT_LOOP=uvloop`
chooses it anyway (an A/B measurement).
"""

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
ENV = "COFI_EVENT_LOOP"


def loop_factory(env: dict[str, str] | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """asyncio's `new_event_loop`, or uvloop's if the environment asks for it (and it is
    installed)."""
    choice = (os.environ if env is None else env).get(ENV, "asyncio").strip().lower()
    if choice not in ("uvloop", "asyncio"):
        raise ValueError(f"{ENV}={choice!r}: choose uvloop or asyncio")
    if choice == "uvloop":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            pass
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def install() -> None:
    """For code that makes its own loop (faust's worker): new loops are the chosen kind."""
    factory = loop_factory()
    if factory is asyncio.new_event_loop:
        return

    class Policy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return factory()

    asyncio.set_event_loop_policy(Policy())
