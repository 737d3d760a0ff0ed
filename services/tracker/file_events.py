"""Which of a file's events the tracker has applied, and whether its end is settled: pure.

Kafka orders events only within a partition, and a file's events travel on several topics:
its last event (on `done`, a skip or a failure) can be read before its earlier stages' events
on other partitions. So a file counts as *ended* only when every event on its route is
applied, not when its terminal event is: a batch is never Complete with a file's flags,
attempts or errors still unread.

A file's applied events are a set of tokens (`fileDistribution.appliedEvents`), so merging
two polls' is a union and any order of the same events gives the same set:

- `u`: its upload;
- `<k>:<stage>`: the stage's `FileStageCompleted` at assignment k (failovers so far);
- `<k>><stage>`: the hand-back that made assignment k, at `stage` (`FileReassigned`);
- `<k>!<stage>`: a `FileFailed` at `stage` on assignment k;
- `<k>*<stage>`: a failure at `stage` on assignment k that a retried input announces (its
  `next_attempt` > 1), so the file waits for that failure's event too;
- `?<stage>`: a dead letter about the file at `stage` (its failure, settled on its own: the
  poison record is the event before it, and it will never be applied).

What a file's end waits for: its upload; at its last assignment every stage of its route
(done or skipped: those its triage route goes through; failed at S: those before S); at
each earlier assignment the stages before the stage it was handed back at, and the
hand-back itself; every failure a retry announced.
"""

from functools import lru_cache
from typing import Final, NamedTuple

from shared.pipeline import PIPELINE, TRIAGE, index, skipped_by, spec

UPLOAD: Final = "u"
_STAGE, _HANDBACK, _FAILURE, _ANNOUNCED, _LETTER = ":", ">", "!", "*", "?"
_SEPARATORS: Final = (_STAGE, _HANDBACK, _FAILURE, _ANNOUNCED)
_ALL: Final = tuple(s.name for s in PIPELINE)
# Per triage route, the stages a file it sends goes through.
_ROUTE: Final[dict[str | None, tuple[str, ...]]] = {
    route: tuple(s.name for s in PIPELINE if s not in skipped_by(TRIAGE, route))
    for route in spec(TRIAGE).routes
}

Events = frozenset[str]


def stage_event(assignment: int, stage: str) -> str:
    return f"{assignment}{_STAGE}{stage}"


def hand_back(assignment: int, stage: str) -> str:
    return f"{assignment}{_HANDBACK}{stage}"


def failure(assignment: int, stage: str) -> str:
    return f"{assignment}{_FAILURE}{stage}"


def announced_failure(assignment: int, stage: str) -> str:
    return f"{assignment}{_ANNOUNCED}{stage}"


def dead_letter(stage: str) -> str:
    return f"{_LETTER}{stage}"


def encode_events(events: Events | None) -> str | None:
    return None if events is None else ",".join(sorted(events))


def decode_events(text: str | None) -> Events | None:
    """None: a row written before the tracker kept its events (its flags stand for them)."""
    if text is None:
        return None
    return frozenset(t for t in text.split(",") if t)


class Progress(NamedTuple):
    """What a file's applied events say: the stages whose own events are applied, and
    whether its end is settled (every event of its route applied)."""

    finished: frozenset[str]
    ended: bool


class _Parsed(NamedTuple):
    last: int
    stages: dict[int, set[str]]
    hand_backs: dict[int, str]
    failures: set[tuple[int, str]]
    announced: set[tuple[int, str]]
    upload: bool
    letter: bool


def _parse(events: Events) -> _Parsed:
    stages: dict[int, set[str]] = {}
    hand_backs: dict[int, str] = {}
    failures: set[tuple[int, str]] = set()
    announced: set[tuple[int, str]] = set()
    last = 0
    for token in events:
        for sep in _SEPARATORS:
            k, found, stage = token.partition(sep)
            if found and k.isdigit():
                break
        else:
            continue  # `u` or a dead letter
        n = int(k)
        last = max(last, n)
        if sep == _STAGE:
            stages.setdefault(n, set()).add(stage)
        elif sep == _HANDBACK:
            # Two hand-backs making one assignment: the earlier stage (order-independent).
            known = hand_backs.get(n)
            hand_backs[n] = stage if known is None or index(stage) < index(known) else known
        elif sep == _FAILURE:
            failures.add((n, stage))
        else:
            announced.add((n, stage))
    letter = any(t.startswith(_LETTER) for t in events)
    return _Parsed(last, stages, hand_backs, failures, announced, UPLOAD in events, letter)


def _before(stage: str) -> tuple[str, ...]:
    return _ALL[: index(stage)]


@lru_cache(maxsize=65_536)
def progress(
    events: Events, terminal: str | None, failed_stage: str | None, route: str | None
) -> Progress:
    """The stages whose events are applied (at any assignment: a stage a file went through
    before a failover stays finished, as its done flag does), and whether its end is
    settled."""
    p = _parse(events)
    finished = frozenset(s for done in p.stages.values() for s in done)
    if terminal == "failed" and p.letter:
        return Progress(finished, True)
    if terminal not in ("done", "skipped", "failed") or not p.upload:
        return Progress(finished, False)
    if not p.announced <= p.failures:
        return Progress(finished, False)
    if terminal == "failed":
        ended = any(
            _route_applied(p, k, _before(stage)) for k, stage in p.failures if stage == failed_stage
        )
    else:  # done, or skipped: every stage its triage route goes through
        ended = _route_applied(p, p.last, _ROUTE.get(route, _ALL))
    return Progress(finished, ended)


def _route_applied(p: _Parsed, assignment: int, wanted: tuple[str, ...]) -> bool:
    """The `wanted` stages applied at `assignment`, and the chain of hand-backs that led
    there with the stages each earlier assignment went through."""
    if not set(wanted) <= p.stages.get(assignment, set()):
        return False
    for k in range(assignment, 0, -1):
        stage = p.hand_backs.get(k)
        if stage is None or not set(_before(stage)) <= p.stages.get(k - 1, set()):
            return False
    return True
