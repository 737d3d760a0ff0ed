"""`fileDistribution.ip` follows a failover (the highest `assignment`), and like every other
column it is a function of the events: any order and any poll sizes give the same tables."""

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.tracker.engine import make_engine
from services.tracker.fold import TrackedEvent
from services.tracker.migrate import migrate
from tests.tracker_expected import assert_expected_tables
from tests.tracker_scenario import apply_in_polls, build_scenario, dump, tracked, tracker_for

Tables = dict[str, list[tuple[Any, ...]]]


async def _tables(url: str, events: Sequence[TrackedEvent], sizes: list[int]) -> Tables:
    await migrate(url)
    engine = make_engine(url)
    try:
        polls = iter(sizes * (len(events) // min(sizes) + 1))
        await apply_in_polls(tracker_for(engine, interval=50), events, lambda: next(polls))
        return await dump(engine)
    finally:
        await engine.dispose()


def test_ip_follows_the_latest_assignment_in_any_order(tmp_path: Path) -> None:
    sc = build_scenario(n=200, failovers=True)
    assert sc.moved, "the scenario moves some files"
    events = tracked(sc)
    shuffled = list(events)
    random.Random(11).shuffle(shuffled)

    async def both() -> tuple[Tables, Tables]:
        first = await _tables(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}", events, [len(events)])
        second = await _tables(f"sqlite+aiosqlite:///{tmp_path / 'two.db'}", shuffled, [7, 3])
        return first, second

    reference, rebuilt = asyncio.run(both())
    assert_expected_tables(sc, reference, n=200, interval=50)
    for table, rows in reference.items():
        assert rebuilt[table] == rows, f"{table} differs in another order"
