"""A batch's files' resolutions, ordered per stage: what the milestone rule reads. Pure.

milestones.py stamps a stage's milestones from its files' resolutions in (time, kind) order.
A completed stage reads them once from every file of the batch; a running stage's milestones
follow the same rule after every poll, so the tracker keeps each open batch's index between
polls (live_milestones.py) and moves it with the files a poll writes.

Whether a kept index still matches the table is told by `batchStatus.resolutionsDigest`: the
XOR of one hash per file of its key, first-seen time and resolutions. An XOR is the same in
any order of the same rows, so the digest is a function of the file rows (a rebuild writes
the same value), and a poll moves it by the rows it changes alone. An index whose digest
differs from the row's (another tracker instance wrote the batch, a transaction rolled back)
is read again from the table.
"""

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any, NamedTuple

from services.tracker.resolutions import (
    FAILED,
    SKIPPED,
    Resolution,
    Resolutions,
    encode_resolutions,
)
from shared.pipeline import PIPELINE

_DIGEST_BITS = (1 << 63) - 1  # a signed BIGINT holds it


class IndexedFile(NamedTuple):
    """What the index keeps of one file row."""

    key: str  # fileDistribution.fileKey
    created_at: datetime | None
    resolutions: Resolutions


def naive_utc(at: datetime | None) -> datetime | None:
    """The table's form of a time (naive UTC), whichever form the caller holds."""
    if at is None or at.tzinfo is None:
        return at
    return at.astimezone(UTC).replace(tzinfo=None)


def file_digest(f: IndexedFile) -> int:
    created = naive_utc(f.created_at)
    text = "\0".join(
        (
            f.key,
            created.isoformat(timespec="microseconds") if created else "",
            encode_resolutions(f.resolutions),
        )
    )
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest()) & _DIGEST_BITS


class BatchIndex:
    """Every file of one batch by key; per stage its resolutions in order; first-seen times
    in order; and the digest of them all."""

    def __init__(self, files: Iterable[IndexedFile] = ()) -> None:
        self._files: dict[str, IndexedFile] = {}
        self._by_stage: list[list[Resolution]] = [[] for _ in PIPELINE]
        # The failed and the skipped of each stage on their own, so that how many of either
        # are among a stage's first m resolutions is two bisections, not a count.
        self._by_kind: dict[str, list[list[Resolution]]] = {
            kind: [[] for _ in PIPELINE] for kind in (FAILED, SKIPPED)
        }
        self._created: list[datetime] = []
        # Per stage, the lowest position whose resolution moved since `settle`: the ones
        # before it are as they were.
        self._low: list[int] = [0 for _ in PIPELINE]
        self.digest = 0
        for f in files:
            self.put(f)

    def __len__(self) -> int:
        return len(self._files)

    def put(self, f: IndexedFile) -> None:
        """Add the file's row, or replace what the index held of it."""
        self.drop(f.key)
        f = f._replace(created_at=naive_utc(f.created_at))
        self._files[f.key] = f
        self._file(f, insort)
        self.digest ^= file_digest(f)

    def drop(self, key: str) -> None:
        old = self._files.pop(key, None)
        if old is not None:
            self._file(old, _remove)
            self.digest ^= file_digest(old)

    def _file(self, f: IndexedFile, change: Callable[[list[Any], Any], None]) -> None:
        """Insert (`insort`) or remove (`_remove`) the file's values in every ordered list."""
        for position, r in enumerate(f.resolutions):
            if r is not None:
                self._moved(position, r)
                change(self._by_stage[position], r)
                if r[-1] in self._by_kind:
                    change(self._by_kind[r[-1]][position], r)
        if f.created_at is not None:
            change(self._created, f.created_at)

    def _moved(self, position: int, r: Resolution) -> None:
        self._low[position] = min(self._low[position], bisect_left(self._by_stage[position], r))

    def unmoved(self, position: int) -> int:
        """How many of the stage's first resolutions are as they were at `settle`."""
        return self._low[position]

    def settle(self) -> None:
        self._low = [len(ordered) for ordered in self._by_stage]

    def ordered(self, position: int) -> list[Resolution]:
        """The stage's resolutions in (time, kind) order (read only)."""
        return self._by_stage[position]

    def among_first(self, position: int, m: int, kind: str) -> int:
        """How many of the stage's first m resolutions (in order) are of `kind`."""
        ordered = self._by_stage[position]
        last = ordered[m - 1]
        count = bisect_right(self._by_kind[kind][position], last)
        if last[-1] == kind:  # copies of `last` beyond the first m are not among them
            count -= bisect_right(ordered, last) - m
        return count

    def first_seen(self) -> datetime | None:
        return self._created[0] if self._created else None


def _remove(ordered: list[Any], value: Any) -> None:
    del ordered[bisect_left(ordered, value)]


def moved_digest(
    digest: int | None, before: Iterable[IndexedFile], after: Iterable[IndexedFile]
) -> int | None:
    """The digest once the rows `before` are replaced by `after` (unknown stays unknown)."""
    if digest is None:
        return None
    for f in (*before, *after):
        digest ^= file_digest(f)
    return digest
