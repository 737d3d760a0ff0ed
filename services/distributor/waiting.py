"""The distributor waits while no GPU host may take a file, and routes it once one may.

Every host drained (`cofi drain`) or marked `:down` in `GPU_HOSTS` is an operator's
doing, never the file's: instead of failing the file (and the rest of the backlog behind
it), the agent holds the message, says so (a log line, `cofi_distributor_waiting_for_hosts`),
and routes it again after a backoff until a host is back (a drain undone, a restart with
another `GPU_HOSTS`). The routers stay pure: they raise `NoHostAvailable`, this waits.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from services.distributor.assignment import NoHostAvailable
from services.distributor.routing import Incoming, Router
from shared.backoff import Backoff
from shared.logging import fields
from shared.output import Output

log = logging.getLogger(__name__)

# How often a held message is routed again while no host may take it.
WAITS = Backoff(first_delay_s=0.2, max_delay_s=5.0)


async def route_when_a_host_may_take_it(
    router: Router,
    message: Incoming,
    waiting: Callable[[bool], None],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[Output]:
    """`router(message)`, once it finds a host; `waiting(True)` while it cannot."""
    tries = 0
    while True:
        try:
            outputs = router(message)
        except NoHostAvailable as exc:
            if tries == 0:
                log.warning(
                    "no GPU host may take files: %s; distribution waits until one may",
                    exc,
                    extra=fields(topic=message.topic, partition=message.partition),
                )
                waiting(True)
            await sleep(WAITS.delay(tries))
            tries += 1
            continue
        if tries:
            log.info("a GPU host may take files again: distribution resumes")
            waiting(False)
        return outputs
