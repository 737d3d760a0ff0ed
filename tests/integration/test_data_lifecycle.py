"""The database's lifecycle on MariaDB: old batches are deleted whole, open ones never; a
backup restores to equal tables."""

import hashlib
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.tracker.migrate import migrate
from services.tracker.retention import delete_batches
from services.tracker.tables import (
    batch_execution_log,
    batch_status,
    dead_letters,
    file_distribution,
    metadata,
    processing_logs,
)
from tests.database_helpers import fresh_database

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
PER_BATCH = (processing_logs, batch_execution_log, dead_letters, file_distribution, batch_status)


def _key(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


async def _batch(engine: AsyncEngine, batch: str, status: str, ended: datetime | None) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(batch_status),
            [{"batchId": batch, "status": status, "createdAt": NOW - timedelta(days=400),
              "completedAt": ended if status == "Complete" else None,
              "cancelledAt": ended if status == "Cancelled" else None}],
        )  # fmt: skip
        for i in range(3):
            name = f"{batch}-{i}.wav"
            await conn.execute(
                insert(file_distribution),
                [{"file": name, "batchId": batch, "fileKey": _key(batch, name)}],
            )
            await conn.execute(
                insert(processing_logs),
                [{"call_id": name, "batch_id": batch, "stage_name": "stt", "status": "success",
                  "attemptKey": _key(batch, name, "stt"), "output_payload": '{"transcript": "x"}'}],
            )  # fmt: skip
        await conn.execute(
            insert(batch_execution_log), [{"batchId": batch, "stage": "stt", "eventType": "x"}]
        )
        await conn.execute(
            insert(dead_letters),
            [{"batchId": batch, "sourceTopic": "cofi.uploads", "sourcePartition": 0,
              "sourceOffset": abs(hash(batch)) % 10**9, "error": "not json",
              "letterKey": _key(batch, "letter")}],
        )  # fmt: skip


async def _rows_of(engine: AsyncEngine) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    async with engine.connect() as conn:
        for table in PER_BATCH:
            column = table.c.batch_id if table is processing_logs else table.c.batchId
            found[table.name] = set((await conn.scalars(select(column).distinct())).all())
    return found


async def test_batches_that_ended_long_ago_go_whole_and_open_ones_stay(mariadb_url: str) -> None:
    await migrate(mariadb_url)
    engine = create_async_engine(mariadb_url)
    try:
        await _batch(engine, "old-done", "Complete", NOW - timedelta(days=100))
        await _batch(engine, "old-cancelled", "Cancelled", NOW - timedelta(days=95))
        await _batch(engine, "old-but-open", "InProgress", None)
        await _batch(engine, "recent-done", "Complete", NOW - timedelta(days=2))
        gone = await delete_batches(engine, timedelta(days=90), chunk=2)
        assert sorted(gone) == ["old-cancelled", "old-done"]
        left = {"old-but-open", "recent-done"}
        assert await _rows_of(engine) == {t.name: left for t in PER_BATCH}
        assert await delete_batches(engine, timedelta(days=90)) == []  # idempotent
    finally:
        await engine.dispose()


def _script(url: str, *args: str) -> str:
    done = subprocess.run(
        [str(ROOT / "scripts" / "db-backup.sh"), *args],
        env=os.environ | {"DATABASE_URL": url.replace("mysql+asyncmy", "mysql")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def _snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            tables = {
                t.name: [tuple(r) for r in await conn.execute(select(t).order_by(t.c.id))]
                for t in metadata.sorted_tables
            }
            views = await conn.scalars(
                text(
                    "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()"
                )
            )
            tables["views"] = [(v,) for v in sorted(views.all())]
            version = await conn.scalars(text("SELECT version_num FROM alembic_version"))
            tables["alembic"] = [(v,) for v in version.all()]
            return tables
    finally:
        await engine.dispose()


async def test_a_dump_dropped_and_restored_gives_equal_tables(
    mariadb_server_url: str, tmp_path: Path
) -> None:
    async with fresh_database(mariadb_server_url) as url:
        await migrate(url)
        engine = create_async_engine(url)
        await _batch(engine, "b1", "Complete", NOW)
        await _batch(engine, "b2", "InProgress", None)
        async with engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(processing_logs)) == 6
        await engine.dispose()
        before = await _snapshot(url)
        dump = tmp_path / "cofi.sql"
        assert "dumped" in _script(url, "dump", str(dump))
        name = url.rsplit("/", 1)[1]
        admin = create_async_engine(mariadb_server_url)
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP DATABASE `{name}`"))
            await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        await admin.dispose()
        assert (await _snapshot_or_empty(url)) == {}
        assert "restored" in _script(url, "restore", str(dump))
        assert await _snapshot(url) == before


async def _snapshot_or_empty(url: str) -> dict[str, list[tuple[object, ...]]]:
    try:
        return await _snapshot(url)
    except Exception:
        return {}


def test_a_backup_of_sqlite_is_refused_with_what_to_do_instead() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "db-backup.sh"), "dump", "/tmp/x.sql"],
        env=os.environ | {"DATABASE_URL": "sqlite+aiosqlite:///cofi.db"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0 and "copy the file" in done.stderr
