"""The order in which a consumer starts the records it fetched ahead: longest call first, with
a bound on how long any record waits."""

from hypothesis import given
from hypothesis import strategies as st

from shared.runtime.start_order import StartQueue


def test_the_longest_call_starts_first_and_ties_keep_arrival_order() -> None:
    queue: StartQueue[str] = StartQueue(patience=100)
    for name, seconds in [("a", 60.0), ("b", 3600.0), ("c", 60.0), ("d", 900.0)]:
        queue.push("p0", seconds, name)
    assert [queue.pop() for _ in range(4)] == ["b", "d", "a", "c"]
    assert len(queue) == 0


def test_a_record_overtaken_by_patience_later_arrivals_goes_next() -> None:
    queue: StartQueue[str] = StartQueue(patience=3)
    queue.push("p0", 1.0, "short")
    for i in range(3):
        queue.push("p0", 100.0 + i, f"long{i}")
    # Three later arrivals overtook nothing yet, but the short call has waited for three.
    assert queue.pop() == "short"
    assert queue.pop() == "long2"


def test_dropping_revoked_partitions_forgets_only_theirs() -> None:
    queue: StartQueue[str] = StartQueue(patience=100)
    queue.push("p0", 5.0, "a")
    queue.push("p1", 9.0, "b")
    queue.push("p0", 7.0, "c")
    assert (queue.count("p0"), queue.count("p1")) == (2, 1)
    assert queue.pop() == "b"
    assert queue.count("p1") == 0
    assert queue.drop({"p0"}) == 2
    assert len(queue) == 0
    assert queue.count("p0") == 0
    queue.push("p1", 1.0, "d")
    assert queue.pop() == "d"


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(0, 2), st.floats(0, 3600)),
            st.tuples(st.just("pop"), st.just(0), st.just(0.0)),
        ),
        max_size=200,
    ),
    st.integers(1, 20),
)
def test_every_record_starts_once_in_rank_order_and_none_waits_past_its_patience(
    actions: list[tuple[str, int, float]], patience: int
) -> None:
    queue: StartQueue[int] = StartQueue(patience=patience)
    waiting: dict[int, float] = {}
    started: list[int] = []
    arrivals = 0
    for action, partition, seconds in actions:
        if action == "push":
            queue.push(partition, seconds, arrivals)
            waiting[arrivals] = seconds
            arrivals += 1
        elif waiting:
            item = queue.pop()
            oldest = min(waiting)
            newest = arrivals - 1
            if newest - oldest >= patience:
                assert item == oldest  # overdue: it goes first
            else:
                best = max(waiting.values())
                assert waiting[item] == best
                assert item == min(i for i, s in waiting.items() if s == best)
            del waiting[item]
            started.append(item)
        assert len(queue) == len(waiting)
        assert sum(queue.count(p) for p in range(3)) == len(waiting)
    while waiting:
        item = queue.pop()
        del waiting[item]
        started.append(item)
    assert sorted(started) == list(range(arrivals))
