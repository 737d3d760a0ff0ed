"""Test hook: die by SIGKILL right after a chosen poll's database commit.

`TRACKER_KILL_AFTER_POLLS=N` makes the tracker kill itself (a real kill -9, no cleanup) once
the N-th poll's transaction has committed and before its offsets are committed: the worst
moment for effectively-once. The crash test `tests/crash/test_tracker_kill.py` uses it to
show that the restarted tracker leaves the tables as a run without the kill. 0 (the default)
disables it; never set it in production.
"""

import logging
import os
import signal
from collections.abc import Sequence

from aiokafka.structs import ConsumerRecord

from shared.runtime.sink_runner import AfterApplyHook

log = logging.getLogger(__name__)


def kill_after_polls(polls: int) -> AfterApplyHook:
    applied = 0

    async def after_apply(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        nonlocal applied
        applied += 1
        if applied >= polls:
            log.warning(
                "TRACKER_KILL_AFTER_POLLS=%d: killing myself before the offset commit", polls
            )
            os.kill(os.getpid(), signal.SIGKILL)

    return after_apply
