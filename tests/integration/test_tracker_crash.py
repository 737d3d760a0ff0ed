"""The tracker dies between its database commit and its offset commit, then restarts: the
tables end identical, row for row and column for column, to a run without the kill.

The kill is SinkRunner's `after_apply` hook raising at a chosen poll: the poll's transaction
has committed, its offsets have not (the consumer stops without committing, as a kill -9
would leave them; `tests/crash/test_tracker_kill.py` does it with a real SIGKILL). The restart
reads the poll again. The run without the kill is the same polls applied to a fresh database
with every record applied once, at its first delivery: so the comparison shows what the
redelivery changed, and nothing of how the broker happened to split records into polls.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TypeAlias

import pytest
from aiokafka.structs import ConsumerRecord

from services.tracker.engine import make_engine
from services.tracker.main import run
from services.tracker.migrate import migrate
from services.tracker.service import Tracker, TrackerOptions
from services.tracker.settings import TrackerSettings
from shared.settings import GpuHost
from tests.database_helpers import fresh_database
from tests.tracker_expected import assert_expected_tables
from tests.tracker_scenario import HOSTS, build_scenario, dump, produce

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class Killed(Exception):
    """Stands for the process dying: raised after the database commit of a chosen poll."""


@pytest.fixture(params=["mariadb", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def reference_url(
    db_url: str, mariadb_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A second fresh database of the same kind as `db_url`, for the run without the kill."""
    if db_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('reference') / 'cofi.db'}"
        return
    async with fresh_database(mariadb_server_url) as url:
        yield url


def position(r: Record) -> tuple[str, int, int]:
    return (r.topic, r.partition, r.offset)


async def test_a_kill_between_the_database_commit_and_the_offset_commit_changes_nothing(
    db_url: str, reference_url: str, topic_prefix: str, kafka_bootstrap: str
) -> None:
    sc = build_scenario(n=300)
    settings = TrackerSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        gpu_hosts=[GpuHost(ip=h) for h in HOSTS],
        database_url=db_url,
        tracker_max_batch=150,  # ~20 polls for the batch
        log_json=False,
    )
    produced = await produce(kafka_bootstrap, settings.topics, sc.events)

    # Three lives of one tracker (one consumer group): killed after its 2nd poll, killed
    # after its 5th poll, then it runs to the end.
    lives: list[list[list[Record]]] = []
    seen: set[tuple[str, int, int]] = set()
    # Records of a poll that died before its offset commit, not delivered again yet: the last
    # life must not stop on having seen every record once while these are still to come.
    unconfirmed: set[tuple[str, int, int]] = set()
    for kill_at in (2, 5, None):
        polls: list[list[Record]] = []
        lives.append(polls)
        stop = asyncio.Event()

        async def after_apply(
            records: Sequence[Record],
            polls: list[list[Record]] = polls,
            stop: asyncio.Event = stop,
            kill_at: int | None = kill_at,
        ) -> None:
            polls.append(list(records))
            positions = {position(r) for r in records}
            seen.update(positions)
            unconfirmed.difference_update(positions)
            if len(polls) == kill_at:
                unconfirmed.update(positions)
                raise Killed(f"after the database commit of poll {kill_at}")
            if len(seen) == produced and not unconfirmed:
                stop.set()

        task = asyncio.create_task(run(settings, stop, after_apply=after_apply))
        if kill_at is None:
            await asyncio.wait_for(task, 120)
        else:
            with pytest.raises(Killed):
                await asyncio.wait_for(task, 120)
            assert len(polls) == kill_at

    # The poll each life died on was delivered again after the restart: its offsets had not
    # been committed, though its transaction had.
    for i, life in enumerate(lives[:-1]):
        later = {position(r) for after in lives[i + 1 :] for poll in after for r in poll}
        assert {position(r) for r in life[-1]} <= later

    # The same polls into a fresh database, each record only at its first delivery.
    await migrate(reference_url)
    reference = make_engine(reference_url)
    crashed = make_engine(db_url)
    try:
        tracker = Tracker(
            reference,
            TrackerOptions(
                topic_prefix=topic_prefix, progress_interval=settings.progress_update_interval
            ),
        )
        applied: set[tuple[str, int, int]] = set()
        for poll in (poll for life in lives for poll in life):
            first_time = [r for r in poll if position(r) not in applied]
            applied.update(position(r) for r in first_time)
            if first_time:
                await tracker.apply_records(first_time)
        assert len(applied) == produced
        after_the_kills = await dump(crashed)
        assert_expected_tables(sc, after_the_kills)
        assert after_the_kills == await dump(reference)
    finally:
        await reference.dispose()
        await crashed.dispose()
