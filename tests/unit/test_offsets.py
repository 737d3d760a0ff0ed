"""Per-record completion, the commit metadata that carries it, and resuming from it."""

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.runtime.offset_metadata import decode, encode, max_span
from shared.runtime.offsets import Admit, PartitionProgress

# -- the encoding -----------------------------------------------------------------------------


def test_no_finished_offset_above_the_mark_is_no_metadata() -> None:
    assert encode(10, set(), 4096).metadata == ""
    assert encode(10, {3, 10}, 4096).metadata == ""  # at or below the mark: nothing to say
    assert decode("", 10, 4096) == frozenset()


def test_dense_offsets_take_a_bitmap_sparse_ones_runs() -> None:
    dense = encode(100, {101, 103, 104, 106, 107, 108}, 4096).metadata
    sparse = encode(100, {20_000, 20_001}, 4096).metadata
    assert dense.startswith("c1b100:")
    assert sparse.startswith("c1r100:")
    assert decode(dense, 100, 4096) == {101, 103, 104, 106, 107, 108}
    assert decode(sparse, 100, 4096) == {20_000, 20_001}
    assert len(sparse) < 20  # a bitmap would need 2.5 KB


def test_metadata_read_beside_another_offset_is_ignored() -> None:
    text = encode(100, {102}, 4096).metadata
    assert decode(text, 100, 4096) == {102}
    assert decode(text, 101, 4096) == frozenset()  # e.g. an operator's reset kept the metadata


def test_the_largest_span_fits_and_one_more_is_left_out() -> None:
    for max_bytes in (64, 100, 4096):
        span = max_span(max_bytes)
        alternating = set(range(1, span + 1, 2)) | {span}  # runs would be long: a bitmap
        top = encode(2**63 - 1 - span, {2**63 - 1 - span + r for r in alternating}, max_bytes)
        assert len(top.metadata) <= max_bytes
        beyond = encode(0, alternating | {span + 1}, max_bytes)
        assert len(beyond.metadata) <= max_bytes
        assert span + 1 not in beyond.kept and decode(beyond.metadata, 0, max_bytes) == beyond.kept


def test_the_default_bound_holds_about_24_thousand_offsets() -> None:
    assert max_span(4096) == 24_432


base_offsets = st.integers(min_value=0, max_value=2**63 - 2**25)
bounds = st.sampled_from([64, 65, 100, 255, 1000, 4096])


@given(base=base_offsets, max_bytes=bounds, data=st.data())
def test_encoding_round_trips_within_the_byte_bound(
    base: int, max_bytes: int, data: st.DataObject
) -> None:
    span = max_span(max_bytes)
    rel = data.draw(st.sets(st.integers(min_value=1, max_value=span), max_size=300))
    finished = {base + r for r in rel}
    encoded = encode(base, finished, max_bytes)
    assert len(encoded.metadata) <= max_bytes
    assert encoded.metadata.isascii()
    assert encoded.kept == finished
    assert decode(encoded.metadata, base, max_bytes) == finished


@given(
    base=base_offsets,
    max_bytes=bounds,
    rel=st.sets(st.integers(min_value=-50, max_value=50_000), max_size=300),
)
def test_any_set_encodes_within_the_bound_keeping_only_what_decodes(
    base: int, max_bytes: int, rel: set[int]
) -> None:
    finished = {base + r for r in rel if base + r >= 0}
    encoded = encode(base, finished, max_bytes)
    assert len(encoded.metadata) <= max_bytes
    assert encoded.kept <= {o for o in finished if o > base}
    assert decode(encoded.metadata, base, max_bytes) == encoded.kept
    # What it leaves out is only ever the highest offsets, beyond the span.
    assert all(o - base > max_span(max_bytes) for o in finished - encoded.kept if o > base)


@given(
    text=st.one_of(
        st.text(max_size=60),
        st.builds(
            lambda kind, body: f"c1{kind}7:{body}",
            st.sampled_from("brx"),
            st.text(alphabet=string.ascii_letters + string.digits + "+/=", max_size=40),
        ),
    )
)
def test_any_metadata_decodes_to_offsets_above_the_base_or_nothing(text: str) -> None:
    found = decode(text, 7, 4096)
    assert all(7 < o <= 7 + max_span(4096) for o in found)


# -- one partition's progress -----------------------------------------------------------------


def test_a_slow_record_holds_only_its_own_slot() -> None:
    p = PartitionProgress()
    for offset in (10, 11, 12, 13):
        assert p.admit(offset) is Admit.START
    for offset in (11, 12, 13):
        p.finish(offset)
    assert p.held == 4  # finished, not yet recorded: a kill -9 now would redo them
    commit = p.commit()
    assert commit is not None
    assert commit.position == 10  # 10 still runs
    assert decode(commit.metadata, 10, 4096) == {11, 12, 13}
    p.mark_committed(commit)
    assert p.held == 1  # recorded: only the slow record holds a slot
    assert p.commit() is None
    p.finish(10)
    commit = p.commit()
    assert commit is not None and (commit.position, commit.metadata) == (14, "")
    p.mark_committed(commit)
    assert p.held == 0


def test_resuming_skips_what_the_metadata_names_and_redoes_the_rest() -> None:
    before = PartitionProgress()
    for offset in range(6):
        before.admit(offset)
    for offset in (0, 2, 3, 5):
        before.finish(offset)
    commit = before.commit()
    assert commit is not None and commit.position == 1
    # kill -9: 1 and 4 were in flight.
    after = PartitionProgress.resume(commit.position, commit.metadata, 4096)
    verdicts = {offset: after.admit(offset) for offset in range(1, 8)}
    assert [o for o, v in verdicts.items() if v is Admit.START] == [1, 4, 6, 7]
    assert [o for o, v in verdicts.items() if v is Admit.SKIP] == [2, 3, 5]


def test_offsets_finished_before_and_not_fetched_yet_move_the_mark() -> None:
    p = PartitionProgress.resume(5, encode(5, {6, 7, 9}, 4096).metadata, 4096)
    assert p.admit(5) is Admit.START
    p.finish(5)
    assert p.position == 8  # 6 and 7 finished before the restart: passed over unseen
    commit = p.commit()
    assert commit is not None and decode(commit.metadata, 8, 4096) == {9}
    assert p.admit(6) is Admit.SKIP and p.admit(7) is Admit.SKIP
    assert p.admit(8) is Admit.START


def test_at_the_metadata_bound_the_partition_waits_until_its_mark_moves() -> None:
    p = PartitionProgress(max_bytes=64)
    span = max_span(64)
    for offset in range(span + 1):
        assert p.admit(offset) is Admit.START
    for offset in range(1, span + 1):
        p.finish(offset)
    assert p.admit(span + 1) is Admit.WAIT  # its finish could not be written down
    assert p.at_bound
    commit = p.commit()
    assert commit is not None and len(commit.metadata) <= 64
    p.finish(0)
    assert not p.at_bound
    assert p.admit(span + 1) is Admit.START


def test_no_commit_before_the_first_record() -> None:
    assert PartitionProgress().commit() is None
    assert PartitionProgress.resume(None, "", 4096).commit() is None


# -- any completion order, any crash point ------------------------------------------------------


@st.composite
def partition_logs(draw: st.DrawFn) -> list[int]:
    """Offsets of a partition from its start: mostly consecutive, with the gaps compaction
    or transaction markers leave."""
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 1, 2, 5]), min_size=1, max_size=80))
    start = draw(st.integers(min_value=0, max_value=10**12))
    offsets, at = [], start
    for step in steps:
        offsets.append(at)
        at += step
    return offsets


FETCH, FINISH, COMMIT = 0, 1, 2


class Life:
    """One consumer's run over the partition, as StageRunner drives PartitionProgress: a slot
    per record until a commit records it, records fetched in order, a partition at the
    metadata bound fetching nothing until its mark moves."""

    def __init__(
        self, log: list[int], durable: tuple[int, str] | None, capacity: int, max_bytes: int
    ) -> None:
        self.log, self.capacity, self.max_bytes = log, capacity, max_bytes
        self.durable = durable
        committed, metadata = durable or (None, "")
        self.p = PartitionProgress.resume(committed, metadata, max_bytes)
        start = durable[0] if durable else log[0]  # the consumer fetches from the commit
        self.cursor = next((i for i, o in enumerate(log) if o >= start), len(log))
        self.done = self.recorded()
        self.started: set[int] = set()
        self.skipped: set[int] = set()

    def recorded(self) -> set[int]:
        """Finished according to the last commit."""
        if self.durable is None:
            return set()
        position, metadata = self.durable
        below = {o for o in self.log if o < position}
        return below | decode(metadata, position, self.max_bytes)

    def step(self, action: int, pick: int) -> None:
        p = self.p
        if action == FETCH and self.cursor < len(self.log) and p.held < self.capacity:
            offset = self.log[self.cursor]
            verdict = p.admit(offset)
            if verdict is Admit.START:
                self.started.add(offset)
            elif verdict is Admit.SKIP:
                self.skipped.add(offset)
            if verdict is not Admit.WAIT:
                self.cursor += 1
        elif action == FINISH and p.in_flight:
            p.finish(sorted(p.in_flight)[pick % len(p.in_flight)])
        elif (commit := p.commit()) is not None:
            assert len(commit.metadata) <= self.max_bytes
            p.mark_committed(commit)
            self.durable = (commit.position, commit.metadata)
        assert p.held <= self.capacity

    def finished_all(self) -> bool:
        return self.cursor >= len(self.log) and not self.p.in_flight and self.p.commit() is None


@settings(max_examples=200, deadline=None)
@given(
    log=partition_logs(),
    capacity=st.integers(min_value=1, max_value=8),
    max_bytes=st.sampled_from([64, 4096]),
    runs=st.lists(
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 7)), max_size=200),
        min_size=1,
        max_size=4,
    ),
)
def test_any_completion_order_and_crash_point_redoes_exactly_the_unfinished_records(
    log: list[int],
    capacity: int,
    max_bytes: int,
    runs: list[list[tuple[int, int]]],
) -> None:
    """Consumers run one after another on a partition, each killed after any sequence of
    fetches, finishes (in any order) and commits; the next resumes from the last commit, and
    a last one runs to the end. Each redoes exactly what the commit before it does not name
    finished: what held a slot at the kill (never more than the capacity) and what had not
    started; it skips every record the commit names, and does each other one once."""
    durable: tuple[int, str] | None = None
    for n, steps in enumerate(runs):
        life = Life(log, durable, capacity, max_bytes)
        to_do = set(log) - life.done
        for action, pick in steps:
            life.step(action, pick)
        last = n == len(runs) - 1
        guard = 0
        while last and not life.finished_all():  # the last one goes on to the end
            life.step([FETCH, FINISH, COMMIT][guard % 3], guard)
            guard += 1
            assert guard < 10_000, "no progress"
        # Killed here (or, last, at the end): the next consumer redoes what this one started
        # and no commit recorded, at most what held a slot, and what it never got to.
        durable = life.durable
        now_done = life.recorded()
        assert life.started <= to_do and life.skipped <= life.done, "redid a finished record"
        assert life.started - now_done == life.p.in_flight | life.p.unrecorded
        assert len(life.started - now_done) <= capacity
        assert set(log) - now_done == (to_do - life.started) | (life.started - now_done)
        if last:
            assert now_done == set(log) and life.started == to_do


def test_a_gap_in_the_offsets_does_not_hold_the_mark_back() -> None:
    p = PartitionProgress(max_bytes=64)
    assert p.admit(0) is Admit.START
    p.finish(0)
    assert p.admit(1_000_000) is Admit.START  # compaction removed everything between
    assert p.position == 1_000_000 and not p.at_bound
