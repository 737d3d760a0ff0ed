"""Retrying an infrastructure step until it works: start a client, publish, apply, connect.

The sibling of `shared.retry` (which bounds calls to model APIs by a budget): a broker or a
database that is down must pause a service, never crash-loop it, so these steps are retried
with capped exponential backoff (`shared.backoff`) until they work, the service stops, or a
deadline passes.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shared.backoff import Backoff as Backoff  # the callers' argument type, re-exported

log = logging.getLogger(__name__)
DEFAULT_BACKOFF = Backoff()


async def keep_trying(
    step: Callable[[], Awaitable[object]],
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    what: str,
    backoff: Backoff = DEFAULT_BACKOFF,
    stop: asyncio.Event | None = None,
    deadline_s: float | None = None,
    on_failure: Callable[[BaseException], None] | None = None,
    logger: logging.Logger = log,
    extra: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bool:
    """Run `step` until it returns: True then, False if `stop` was set while waiting.

    Errors of `retry_on` are logged (as "<what>, retrying in Ns: <error>") and retried; any
    other error, and the last one once the next retry would pass `deadline_s`, propagate.
    Cancellation always propagates.
    """
    give_up_at = None if deadline_s is None else clock() + deadline_s
    waits = backoff.waits()
    while True:
        try:
            await step()
            return True
        except asyncio.CancelledError:
            raise
        except retry_on as exc:
            delay = waits.next()
            if give_up_at is not None and clock() + delay > give_up_at:
                raise
            if on_failure is not None:
                on_failure(exc)
            logger.warning("%s, retrying in %.1fs: %s", what, delay, _short(exc), extra=extra or {})
        if stop is None:
            await sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return False


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    # A summary for a log line or a dead letter's reason (its raw bytes are kept whole):
    # a long one says how long it was.
    return text if len(text) <= 300 else f"{text[:300]} [cut: {len(text)} characters]"
