"""What makes two files of a batch count alike for its statuses: pure, no I/O.

The store keeps, per batch, how many files share each `SignatureKey` (the stages whose own
events are applied, triage route, terminal state, failed stage, whether the file's end is
settled), in `batchStatus.fileCounts`; batch_status.py recomputes the batch's statuses from
those counts.

How a file counts for a stage (`FileSignature.outcome`):
- finished: the stage's own event is applied (never inferred from a later stage's event:
  that one may have been read first, while this one is still on another partition);
- skipped: triage routed it out before the stage (any stage after triage);
- failed: its terminal state is failed at or before the stage;
- cancelled: its batch was cancelled before the file got through the stage;
- pending: none of these yet; it has *entered* the stage if it finished the stage before.
The last stage counts a file as resolved only once its end is settled (file_events.py: every
event of its route applied), so a batch is never Complete with a file's events unread.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Final, NamedTuple

from services.tracker import file_events
from services.tracker.poll_changes import FileChange
from shared.pipeline import PIPELINE, TRIAGE, index, skipped_by, spec

# Stage positions are shared.pipeline's: "distribute" is 0, the last stage len(PIPELINE) - 1.
LAST_INDEX: Final = len(PIPELINE) - 1
NOTHING: Final = -1  # the position of a file that has not been through any stage


# Per triage route, the positions of the stages a file it sends never goes through.
_SKIPPED: Final[dict[str | None, frozenset[int]]] = {
    route: frozenset(index(s.name) for s in skipped_by(TRIAGE, route))
    for route in spec(TRIAGE).routes
}


@dataclass(frozen=True)
class FileSignature:
    """A combination of a file's progress columns, and how many files of the batch have it."""

    count: int
    # The stages its columns show it went through: a done flag set, or a decision made (the
    # stage's `flag_column` / `decision_column` in shared/pipeline.py).
    finished: frozenset[str] = frozenset()
    triage_route: str | None = None
    terminal_state: str | None = None
    failed_stage: str | None = None
    finished_at: datetime | None = None  # the latest `finishedAt` of these files
    # Every event of the file's route applied (file_events.py): only then does its end
    # resolve the last stage, so the batch is not Complete with events of it unread.
    ended: bool = True
    # Its upload is applied: only such files count toward the batch's `file_count`
    # (poll_plan.py `decide_uploads`); a file seen only by later events is provisional.
    uploaded: bool = True

    @cached_property  # asked for every stage of every signature on each poll
    def reached(self) -> int:
        """Position of the furthest stage whose own event is applied."""
        return max((index(stage) for stage in self.finished), default=NOTHING)

    def outcome(self, position: int) -> str:
        """ "finished", "skipped", "failed", "cancelled" or "pending" for the stage at
        `position`."""
        found = self._outcome(position)
        if position == LAST_INDEX and found != "cancelled" and not self.ended:
            return "pending"
        return found

    def _outcome(self, position: int) -> str:
        # A stage counts finished by its own event, never by a later one: that later event
        # may have been read before this one, which is still on another partition.
        if PIPELINE[position].name in self.finished:
            return "finished"
        if position in _SKIPPED.get(self.triage_route, ()):
            return "skipped"
        if self.terminal_state == "failed" and self._failed_index() <= position:
            return "failed"
        if self.terminal_state == "cancelled":
            return "cancelled"
        return "pending"

    def entered(self, position: int) -> bool:
        outcome = self.outcome(position)
        if outcome == "finished":
            return True
        if outcome == "failed":
            return self._failed_index() == position
        return outcome in ("pending", "cancelled") and self.reached >= position - 1

    def _failed_index(self) -> int:
        # A failure that names no stage counts from the first one.
        return index(self.failed_stage) if self.failed_stage else 0


def file_signature(c: FileChange) -> FileSignature:
    """A file's row as the one file of its signature: the stages whose events are applied,
    triage route, terminal state, failed stage, and whether its end is settled."""
    if c.applied_events is not None:
        finished, ended = file_events.progress(
            c.applied_events, c.terminal_state, c.failed_stage, c.triage_route
        )
        return FileSignature(
            1,
            finished,
            c.triage_route,
            c.terminal_state,
            c.failed_stage,
            None,
            ended,
            file_events.has_upload(c.applied_events),
        )
    return FileSignature(
        1,
        legacy_finished(c.flags, c.ip is not None, c.triage_route is not None, c.terminal_state),
        c.triage_route,
        c.terminal_state,
        c.failed_stage,
    )


@lru_cache(maxsize=1024)
def legacy_finished(
    flags: frozenset[str], host_assigned: bool, triaged: bool, terminal: str | None
) -> frozenset[str]:
    """A row written before the tracker kept its events: the stages its columns show it went
    through (a done flag set, a decision made; every stage for a done file)."""
    if terminal == "done":
        return ALL_STAGES
    decided = {"ip": host_assigned, "triageRoute": triaged}
    return frozenset(
        s.name
        for s in PIPELINE
        if (s.flag_column is not None and s.flag_column in flags)
        or (s.decision_column is not None and decided[s.decision_column])
    )


ALL_STAGES: Final = frozenset(s.name for s in PIPELINE)


class SignatureKey(NamedTuple):
    """What makes two files of a batch count alike (a `FileSignature` without its count)."""

    finished: frozenset[str]
    triage_route: str | None
    terminal_state: str | None
    failed_stage: str | None
    ended: bool
    uploaded: bool = True


def signature_key(sig: FileSignature) -> SignatureKey:
    return SignatureKey(
        sig.finished,
        sig.triage_route,
        sig.terminal_state,
        sig.failed_stage,
        sig.ended,
        sig.uploaded,
    )


def uploaded_files(counts: Mapping[SignatureKey, int]) -> int:
    """How many of the batch's files have their upload applied."""
    return sum(n for k, n in counts.items() if k.uploaded)


def provisional_files(counts: Mapping[SignatureKey, int]) -> int:
    """How many of the batch's files are known only by events after their upload."""
    return sum(n for k, n in counts.items() if not k.uploaded)


def count_signatures(counts: Mapping[SignatureKey, int]) -> list[FileSignature]:
    return [
        FileSignature(
            n,
            k.finished,
            k.triage_route,
            k.terminal_state,
            k.failed_stage,
            None,
            k.ended,
            k.uploaded,
        )
        for k, n in counts.items()
        if n
    ]


def encode_counts(signatures: Iterable[FileSignature]) -> str:
    """The batch's signature counts as JSON text, in a fixed order (the same counts give the
    same text): `[["01101000", route, terminal, failedStage, count], ...]`, with a sixth
    element 0 for files whose end is not settled yet (1 if settled but a seventh follows),
    and a seventh, 0, for files whose upload is not applied yet."""
    merged: dict[SignatureKey, int] = {}
    for sig in signatures:
        key = signature_key(sig)
        merged[key] = merged.get(key, 0) + sig.count
    entries = sorted(
        (
            "".join("1" if s.name in k.finished else "0" for s in PIPELINE),
            k.triage_route or "",
            k.terminal_state or "",
            k.failed_stage or "",
            n,
            k.ended,
            k.uploaded,
        )
        for k, n in merged.items()
        if n
    )
    return json.dumps(
        [
            [m, r or None, t or None, f or None, n, *_marks(ended, uploaded)]
            for m, r, t, f, n, ended, uploaded in entries
        ]
    )


def _marks(ended: bool, uploaded: bool) -> tuple[int, ...]:
    if not uploaded:
        return (int(ended), 0)
    return () if ended else (0,)


def decode_counts(text: str) -> dict[SignatureKey, int]:
    out: dict[SignatureKey, int] = {}
    for marks, route, terminal, failed, n, *extra in json.loads(text):
        settled = not extra or bool(extra[0])
        uploaded = len(extra) < 2 or bool(extra[1])
        finished = frozenset(s.name for s, m in zip(PIPELINE, marks, strict=True) if m == "1")
        if terminal == "done" and settled:
            finished = ALL_STAGES  # a settled done file went through every stage
        out[SignatureKey(finished, route, terminal, failed, settled, uploaded)] = int(n)
    return out
