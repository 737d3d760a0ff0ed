"""A kind of fault, as the game day's catalogue holds it: how it starts, how it stops,
how long it may last, what infrastructure it needs, and what the pipeline must do meanwhile.
`may_fail` is a pattern of the `failedError` a file may end with because of the fault
(hostile input, a broken answer, an over-large output): any other failure breaks an
invariant."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from tests.gameday.day import Day

Action = Callable[[Day, dict[str, Any]], Awaitable[None]]
Needs = Literal["shared", "private-kafka", "private-mariadb", "private-cluster"]
NO_FILE_FAILS = "no file fails; the stages wait and resume by themselves"


@dataclass(frozen=True)
class FaultKind:
    name: str
    title: str
    start: Action
    stop: Action
    expects: str
    hold_s: tuple[float, float] = (20.0, 60.0)
    needs: Needs = "shared"
    crash: str = ""  # the crash scenario it comes from
    issue: str = ""  # the row or list item of issue 19 it comes from
    may_fail: str = ""


def kind(name: str, title: str, pair: tuple[Any, Any], expects: str, **kw: Any) -> FaultKind:
    start, stop = pair
    return FaultKind(name, title, start, stop, expects, **kw)


KILL_HOLD = (3.0, 20.0)
