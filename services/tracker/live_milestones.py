"""A running stage's milestones, after every poll, by the same rule as a completed one's.

milestones.py stamps a stage's `stage_start` and `stage_progress` rows from its files'
resolutions in (time, kind) order. Were a running stage's rows stamped with what the poll
that crossed them knew, the table would depend on where the polls ended; so after every poll
the tracker applies the rule to the batch's files as they now stand, and writes the rows that
moved: the table is then the same function of the events applied, at any moment.

Reading every file of a batch in every poll would cost work in proportion to the batch, so
the tracker keeps each open batch's `BatchIndex` here between polls, with the rows it last
wrote. An index is used only while its digest equals `batchStatus.resolutionsDigest` as the
poll found it (resolution_index.py); otherwise the batch's files are read again. A poll that
fails forgets every kept index (`clear`), since its writes were rolled back.
"""

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.tracker.poll_changes import STAGE_PROGRESS, LogRow
from services.tracker.resolution_index import BatchIndex
from shared.pipeline import PIPELINE

# Open batches kept at once; an evicted one is read again when a poll next touches it.
MAX_BATCHES = 64


@dataclass
class _Kept:
    index: BatchIndex
    written: dict[str, LogRow] = field(default_factory=dict)  # by eventKey
    total_files: int | None = None  # what the written rows carry


class LiveMilestones:
    def __init__(self, max_batches: int = MAX_BATCHES) -> None:
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._max = max_batches

    def index(self, batch_id: str, digest: int | None) -> BatchIndex | None:
        """The kept index of the batch, if it matches the row's digest."""
        kept = self._kept.get(batch_id)
        if kept is None or digest is None or kept.index.digest != digest:
            self._kept.pop(batch_id, None)
            return None
        self._kept.move_to_end(batch_id)
        return kept.index

    def keep(self, batch_id: str, index: BatchIndex) -> None:
        """A batch's index read from its files: what the table holds of its milestones is
        unknown, so every live row is written once more."""
        self._kept[batch_id] = _Kept(index)
        self._kept.move_to_end(batch_id)
        while len(self._kept) > self._max:
            self._kept.popitem(last=False)

    def unmoved(self, batch_id: str, total_files: int | None) -> dict[int, int]:
        """Per stage position, how many first resolutions are as they were when the rows
        were last written (none, if the rows carry another `totalFiles`)."""
        kept = self._kept[batch_id]
        if kept.total_files != total_files or not kept.written:
            return {}
        return {position: kept.index.unmoved(position) for position in range(len(PIPELINE))}

    def moved(
        self,
        batch_id: str,
        rows: Sequence[LogRow],
        stages: Iterable[str],
        unmoved: Mapping[int, int],
        total_files: int | None,
    ) -> tuple[list[LogRow], list[str]]:
        """Of the running `stages`' rows now (`rows`, but for the progress rows within
        `unmoved`, which are as written), those to write, and the eventKeys to delete."""
        kept = self._kept[batch_id]
        running = set(stages)
        known: dict[str, int] = {PIPELINE[p].name: n for p, n in unmoved.items()}
        now = {
            k: r
            for k, r in kept.written.items()
            if r.stage in running
            and r.event_type == STAGE_PROGRESS
            and (r.processed_files or 0) <= known.get(r.stage, 0)
        }
        now.update((r.event_key, r) for r in rows)
        write = [r for r in rows if kept.written.get(r.event_key) != r]
        gone = [k for k, r in kept.written.items() if r.stage in running and k not in now]
        kept.written, kept.total_files = now, total_files
        kept.index.settle()
        return write, gone

    def forget(self, batch_ids: Iterable[str]) -> None:
        for batch_id in batch_ids:
            self._kept.pop(batch_id, None)

    def clear(self) -> None:
        self._kept.clear()
