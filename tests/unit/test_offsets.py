from shared.runtime.offsets import PartitionProgress


def test_nothing_started_nothing_to_commit() -> None:
    assert PartitionProgress().committable() is None


def test_commit_stops_below_the_lowest_offset_in_flight() -> None:
    p = PartitionProgress()
    for offset in (10, 11, 12, 13):
        p.start(offset)
    p.finish(11)
    p.finish(13)
    assert p.committable() == 10  # 10 still runs: nothing past it may be committed
    p.finish(10)
    assert p.committable() == 12
    p.finish(12)
    assert p.committable() == 14


def test_committed_position_is_not_offered_again() -> None:
    p = PartitionProgress()
    p.start(0)
    p.finish(0)
    assert p.committable() == 1
    p.mark_committed(1)
    assert p.committable() is None
    p.start(1)
    assert p.committable() is None  # 1 in flight: position stays 1
    p.finish(1)
    assert p.committable() == 2


def test_a_record_is_held_until_a_commit_covers_it() -> None:
    p = PartitionProgress()
    for offset in (5, 6, 7):
        p.start(offset)
    p.finish(6)
    p.finish(7)
    assert p.held == 3  # finished, but a kill -9 now would redo all three
    p.mark_committed(5)
    assert p.held == 3  # 5 is still in flight: the commit stopped below it
    p.finish(5)
    p.mark_committed(8)
    assert p.held == 0
