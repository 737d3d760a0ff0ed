"""The index of a batch's resolutions (resolution_index.py): its order, its counts by kind
and its digest are those of its files, whatever order they were put, replaced and dropped."""

from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.tracker.resolution_index import BatchIndex, IndexedFile, moved_digest
from services.tracker.resolutions import FAILED, SKIPPED, failed_from, finished_through
from shared.pipeline import PIPELINE

T0 = datetime(2026, 1, 15, 9, 0)


@st.composite
def files(draw: st.DrawFn) -> IndexedFile:
    key = draw(st.sampled_from([f"k{i}" for i in range(8)]))
    at = T0 + timedelta(seconds=draw(st.integers(0, 5)))  # ties on purpose
    position = draw(st.integers(0, len(PIPELINE) - 1))
    fate = draw(st.sampled_from(["done", "skipped", "failed"]))
    resolutions = (
        failed_from(at, position)
        if fate == "failed"
        else finished_through(at, position, skipped=fate == "skipped")
    )
    return IndexedFile(key, at, resolutions)


@given(st.lists(st.tuples(st.booleans(), files()), max_size=30))
def test_the_index_is_a_function_of_the_files_it_holds(
    steps: list[tuple[bool, IndexedFile]],
) -> None:
    index, held = BatchIndex(), dict[str, IndexedFile]()
    for drop, f in steps:
        if drop:
            index.drop(f.key)
            held.pop(f.key, None)
        else:
            index.put(f)
            held[f.key] = f
    fresh = BatchIndex(reversed(list(held.values())))
    assert index.digest == fresh.digest
    seen = [f.created_at for f in held.values() if f.created_at is not None]
    assert index.first_seen() == min(seen, default=None)
    for position in range(len(PIPELINE)):
        expected = sorted(r for f in held.values() if (r := f.resolutions[position]) is not None)
        assert index.ordered(position) == fresh.ordered(position) == expected
        for m in range(1, len(expected) + 1):
            for kind in (FAILED, SKIPPED):
                assert index.among_first(position, m, kind) == sum(
                    r[-1] == kind for r in expected[:m]
                )


@given(st.lists(files(), max_size=10), st.lists(files(), max_size=10))
def test_a_digest_moves_by_the_rows_replaced(
    before: list[IndexedFile], after: list[IndexedFile]
) -> None:
    old, new = {f.key: f for f in before}, {f.key: f for f in after}
    assert moved_digest(BatchIndex(old.values()).digest, old.values(), new.values()) == (
        BatchIndex(new.values()).digest
    )
    assert moved_digest(None, old.values(), new.values()) is None


@given(st.lists(files(), min_size=1, max_size=20), files())
def test_unmoved_counts_the_first_resolutions_a_change_left_alone(
    held: list[IndexedFile], change: IndexedFile
) -> None:
    index = BatchIndex({f.key: f for f in held}.values())
    index.settle()
    before = [list(index.ordered(p)) for p in range(len(PIPELINE))]
    index.put(change)
    for position in range(len(PIPELINE)):
        n = index.unmoved(position)
        assert index.ordered(position)[:n] == before[position][:n]
