"""kill -9 of a tracker process between its database commit and its offset commit.

`python -m services.tracker` runs with `TRACKER_KILL_AFTER_POLLS=N`
(services/tracker/kill_switch.py): it SIGKILLs itself right after the N-th poll's database
commit, before the offsets. Killed after its first poll (rows written, nothing committed in
Kafka), restarted and killed again mid-batch, then restarted to the end: the tables equal
those of a tracker that was never killed. Milestones' observational columns (what the tracker
knew when it logged one) depend on how the broker split records into polls, so they are
left out here; `tests/integration/test_tracker_crash.py` compares every column on the same
polls.
"""

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, TopicPartition

from services.tracker.engine import make_engine
from services.tracker.main import run
from services.tracker.settings import TrackerSettings
from shared.settings import GpuHost
from tests import kafka_helpers
from tests.database_helpers import fresh_database
from tests.tracker_expected import assert_expected_tables
from tests.tracker_scenario import HOSTS, build_scenario, dump, produce, state, wait_until

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2


def start_tracker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.tracker"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def exit_code(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    try:
        await kafka_helpers.wait_until(
            lambda: process.poll() is not None, timeout_s, "the tracker's exit", interval_s=0.1
        )
    except TimeoutError:
        process.kill()
        raise AssertionError(f"the tracker did not exit within {timeout_s}s") from None
    return process.returncode


async def offsets(bootstrap: str, group: str, topics: list[str]) -> tuple[int, int]:
    """(records the group has committed, records in the topics)."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await reader.start()
    await admin.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        ends = await reader.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group)
        done = sum(m.offset for tp, m in committed.items() if tp in ends and m.offset >= 0)
        return done, sum(ends.values())
    finally:
        await admin.close()
        await reader.stop()


async def rows(url: str) -> int:
    """Rows in the tracker's tables, all together."""
    engine = make_engine(url)
    try:
        return sum(len(table_rows) for table_rows in (await dump(engine)).values())
    finally:
        await engine.dispose()


@pytest.fixture
async def reference_url(mariadb_server_url: str) -> AsyncIterator[str]:
    """A second fresh MariaDB database, for the tracker that is never killed."""
    async with fresh_database(mariadb_server_url) as url:
        yield url


async def test_kill_9_between_the_database_commit_and_the_offset_commit(
    mariadb_url: str, reference_url: str, topic_prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = build_scenario(n=300)
    settings = TrackerSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        gpu_hosts=[GpuHost(ip=h) for h in HOSTS],
        database_url=mariadb_url,
        tracker_max_batch=150,
        log_json=False,
    )
    produced = await produce(kafka_bootstrap, settings.topics, sc.events, partitions=PARTITIONS)
    topics = settings.topics.all_topics(list(HOSTS))
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": topic_prefix,
        "DATABASE_URL": mariadb_url,
        "TRACKER_MAX_BATCH": "150",
        "LOG_JSON": "false",
    }
    log = tmp_path / "tracker.log"

    # Life 1: killed right after its first poll's commit: rows written, no offset committed.
    first = start_tracker({**env, "TRACKER_KILL_AFTER_POLLS": "1"}, log)
    assert await exit_code(first, 120) == -signal.SIGKILL, log.read_text()
    written = await rows(mariadb_url)
    assert written > 0
    assert await offsets(kafka_bootstrap, settings.group_id, topics) == (0, produced)

    # Life 2: killed mid-batch, after its 4th poll (it re-applies the first poll on the way).
    second = start_tracker({**env, "TRACKER_KILL_AFTER_POLLS": "4"}, log)
    assert await exit_code(second, 120) == -signal.SIGKILL, log.read_text()
    committed, _ = await offsets(kafka_bootstrap, settings.group_id, topics)
    assert 0 < committed < produced
    assert await rows(mariadb_url) > written

    # Life 3: to the end of the topics, then stopped gracefully.
    third = start_tracker(env, log)
    try:

        async def caught_up() -> bool:
            if third.poll() is not None:
                raise AssertionError(f"the tracker died:\n{log.read_text()[-3000:]}")
            done, total = await offsets(kafka_bootstrap, settings.group_id, topics)
            return done == total == produced

        await wait_until(caught_up, "the restarted tracker to commit every offset", 120)
    finally:
        third.send_signal(signal.SIGTERM)
        await exit_code(third, 30)

    # A tracker that was never killed: its own group, its own fresh database.
    stop, seen = asyncio.Event(), [0]

    async def count(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        seen[0] += len(records)
        if seen[0] >= produced:
            stop.set()

    never_killed = settings.model_copy(
        update={"database_url": reference_url, "tracker_group_id": f"{topic_prefix}-reference"}
    )
    await asyncio.wait_for(run(never_killed, stop, after_apply=count), 120)
    assert seen[0] == produced

    killed, reference = make_engine(mariadb_url), make_engine(reference_url)
    try:
        assert_expected_tables(sc, await dump(killed))
        assert await state(killed) == await state(reference)
    finally:
        await killed.dispose()
        await reference.dispose()
