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

from tests.unit.test_tracker_interleavings import (
    Streams,
    Tracked,
    apply_in_polls,
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
