"""The tracker's tables are a function of the events applied, at any moment (issue 19).

Not only once a batch completes: mid-batch, the events applied so far must give the same
tables whatever their interleaving and split into polls, a running stage's milestones
included (milestones.py, live_milestones.py). The batches are those of
test_tracker_interleavings.py."""

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events import BatchCancelled, FileUploaded
from shared.topics import Topics
from tests.unit.test_tracker_interleavings import (
    Batch,
    Streams,
    Tracked,
    apply_in_polls,
    build,
    fresh_database,
    runs,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(run=runs(), cut=st.floats(0.0, 1.0), instances=st.integers(1, 2))
def test_any_moment_the_tables_are_a_function_of_what_was_applied(
    tmp_path_factory: Any,
    run: tuple[Streams, list[Tracked], list[int]],
    cut: float,
    instances: int,
) -> None:
    """Mid-batch too: the events applied so far (any prefix of an interleaving is a prefix of
    every partition) give the same tables in one poll, in the order they were made, as in
    the interleaving's polls, a running stage's milestones included; also when two tracker
    instances take turns (each one's kept resolutions go stale by the other's polls)."""
    streams, order, sizes = run
    applied = order[: round(len(order) * cut)]
    chosen = {id(e) for e in applied}
    tmp: Path = tmp_path_factory.mktemp("moment")
    reference_db, run_db = fresh_database(tmp, "ref.db"), fresh_database(tmp, "run.db")

    async def both() -> tuple[Any, Any]:
        made = [e for e in streams.made if id(e) in chosen]
        reference = await apply_in_polls(reference_db, made, [max(1, len(made))], None)
        return reference, await apply_in_polls(run_db, applied, sizes, None, instances)

    reference, shuffled = asyncio.run(both())
    for table, rows in reference.items():
        assert shuffled[table] == rows, f"{table} differs at the same moment"


def test_a_stage_a_late_file_started_is_not_started_once_the_close_says_it_is_late(
    tmp_path: Path,
) -> None:
    """Found by the test above: in a cancelled batch, a late file's events applied before the
    close count it as one of the batch's, so its stages read started; once the close says
    the batch has two files, a stage neither of them reached has no `stage_start` row."""
    streams = build(
        Batch(
            fates=(("failed", "denoise", False), ("done", None, False)),
            close_after=0,
            late=1,
            cancel_after=0,
            redelivered=(),
        )
    )
    uploads = Topics("cofi").uploads
    cancel = [e for e in streams.made if isinstance(e, BatchCancelled)]
    late_stages = [
        e
        for (topic, _), stream in streams.by_partition.items()
        if topic != uploads
        for e in stream
        if getattr(e, "file_name", "") == "late-0.wav"
    ]
    up_to_the_late_upload = [
        e for (topic, _), stream in streams.by_partition.items() if topic == uploads for e in stream
    ]
    on_time = up_to_the_late_upload[
        : next(
            i
            for i, e in enumerate(up_to_the_late_upload)
            if isinstance(e, FileUploaded) and e.file_name == "late-0.wav"
        )
    ]
    applied = [*cancel, *late_stages, *on_time]
    chosen = {id(e) for e in applied}
    made = [e for e in streams.made if id(e) in chosen]
    reference_db = fresh_database(tmp_path, "ref.db")
    run_db = fresh_database(tmp_path, "run.db")

    async def both() -> tuple[Any, Any]:
        reference = await apply_in_polls(reference_db, made, [len(made)], None)
        return reference, await apply_in_polls(run_db, applied, [1], None)

    reference, one_by_one = asyncio.run(both())
    assert one_by_one["batchExecutionLog"] == reference["batchExecutionLog"]
