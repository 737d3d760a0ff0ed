"""The event loop every service's main runs on: uvloop when it is installed, else asyncio's.

uvloop makes each Kafka request and HTTP call cheaper in CPU (bench/FINDINGS.md, issue 21):
the control plane's cost is mostly loop plumbing around small requests. `COFI_EVENT_LOOP=asyncio`
keeps the standard loop (an A/B measurement, or a platform uvloop does not build on).
"""

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
ENV = "COFI_EVENT_LOOP"


def loop_factory(env: dict[str, str] | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's `new_event_loop`, unless the environment asks for asyncio or uvloop is absent."""
    choice = (os.environ if env is None else env).get(ENV, "uvloop").strip().lower()
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
