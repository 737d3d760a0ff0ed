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
- `<k>!<stage>@<n>`: a `FileFailed` at `stage` on assignment k, its last attempt n;
- `<k>*<stage>@<n>`: the input `cofi retry` sent back to `stage` on assignment k (its
  `next_attempt` n above the assignment's first), which announces a failure at `stage`
  before attempt n: the file waits for that failure's event too, and that failure no
  longer ends the file (it went on);
- `<k>^<stage>@<n>`: the stage's event on assignment k came from such a retried input (its
  first attempt n above the assignment's first): the file waits for that input's event too;
- `?<stage>`: a dead letter about the file at `stage` (its failure, settled on its own: the
  poison record is the event before it, and it will never be applied).

What a file's end waits for: its upload; at its last assignment every stage of its route
(done or skipped: those its triage route goes through; failed at S: those before S, by a
failure at its last assignment that no retry went on from); at
each earlier assignment the stages before the stage it was handed back at, and the
hand-back itself; every retried input a stage ran from, and every failure a retry announced.
"""

from functools import lru_cache
from typing import Final, NamedTuple

from shared.pipeline import PIPELINE, TRIAGE, index, skipped_by, spec

UPLOAD: Final = "u"
_STAGE, _HANDBACK, _FAILURE, _ANNOUNCED, _RERUN, _LETTER = ":", ">", "!", "*", "^", "?"
_SEPARATORS: Final = (_STAGE, _HANDBACK, _FAILURE, _ANNOUNCED, _RERUN)
_AT: Final = "@"
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


def failure(assignment: int, stage: str, attempt: int) -> str:
    """A failure whose last attempt is `attempt` (0: it made none)."""
    return f"{assignment}{_FAILURE}{stage}{_AT}{attempt}"


def announced_failure(assignment: int, stage: str, next_attempt: int) -> str:
    return f"{assignment}{_ANNOUNCED}{stage}{_AT}{next_attempt}"


def rerun(assignment: int, stage: str, first_attempt: int) -> str:
    return f"{assignment}{_RERUN}{stage}{_AT}{first_attempt}"


def dead_letter(stage: str) -> str:
    return f"{_LETTER}{stage}"


def has_upload(events: Events | None) -> bool:
    """Its upload is applied (None: a row the previous version wrote, counted when written).
    An upload record the tracker read as poison on the uploads partition counts too (fold.py
    gives it the upload's token): it is the file's upload, and no other will come."""
    return events is None or UPLOAD in events


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


class _Numbered(NamedTuple):
    assignment: int
    stage: str
    attempt: int


class _Parsed(NamedTuple):
    last: int
    stages: dict[int, set[str]]
    hand_backs: dict[int, str]
    failures: set[_Numbered]
    announced: set[_Numbered]
    reruns: set[_Numbered]
    upload: bool
    letter: bool


def _parse(events: Events) -> _Parsed:
    stages: dict[int, set[str]] = {}
    hand_backs: dict[int, str] = {}
    numbered: dict[str, set[_Numbered]] = {_FAILURE: set(), _ANNOUNCED: set(), _RERUN: set()}
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
        else:
            name, _, attempt = stage.partition(_AT)
            numbered[sep].add(_Numbered(n, name, int(attempt) if attempt.isdigit() else 0))
    letter = any(t.startswith(_LETTER) for t in events)
    upload = UPLOAD in events
    failures, announced, reruns = numbered[_FAILURE], numbered[_ANNOUNCED], numbered[_RERUN]
    return _Parsed(last, stages, hand_backs, failures, announced, reruns, upload, letter)


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
    if not (p.reruns <= p.announced) or not all(
        any(f.attempt < a.attempt for f in p.failures if f[:2] == a[:2]) for a in p.announced
    ):
        return Progress(finished, False)  # a retried input, or the failure it retries, unread
    if terminal == "failed":
        ended = any(
            _route_applied(p, f.assignment, _before(f.stage))
            for f in p.failures
            if f.stage == failed_stage and _final(p, f)
        )
    else:  # done, or skipped: every stage its triage route goes through
        ended = _route_applied(p, p.last, _ROUTE.get(route, _ALL))
    return Progress(finished, ended)


def _final(p: _Parsed, f: _Numbered) -> bool:
    """A failure ends the file unless the file went on: a retry sent its input back (a later
    attempt announced), or a hand-back moved it to a later assignment."""
    retried = any(a[:2] == f[:2] and a.attempt > f.attempt for a in p.announced)
    return f.assignment == p.last and not retried


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
