"""The tracker's migrations, on MariaDB and SQLite: they build the schema `tables.py`
describes, and upgrading an old database keeps every row."""

import hashlib
from typing import Any

import pytest
from sqlalchemy import UniqueConstraint, inspect, select, text

from services.tracker.engine import make_engine
from services.tracker.migrate import migrate
from services.tracker.tables import (
    batch_execution_log,
    batch_status,
    file_distribution,
    metadata,
    processing_logs,
)
from shared.events import (
    FileContext,
    FileStageCompleted,
)
from tests.tracker_scenario import (
    T0,
    tracker_for,
)


@pytest.fixture(params=["mariadb", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def test_migrations_build_the_schema_of_tables_py(db_url: str) -> None:
    await migrate(db_url)
    await migrate(db_url)  # a second run is a no-op
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()

            def schema(sync_conn: Any) -> dict[str, tuple[set[str], set[tuple[str, ...]]]]:
                insp = inspect(sync_conn)
                return {
                    name: (
                        {c["name"] for c in insp.get_columns(name)},
                        {tuple(u["column_names"]) for u in insp.get_unique_constraints(name)}
                        | {
                            tuple(i["column_names"])
                            for i in insp.get_indexes(name)
                            if i.get("unique")
                        },
                    )
                    for name in metadata.tables
                }

            found = await conn.run_sync(schema)
    finally:
        await engine.dispose()
    assert version == [("0010",)]
    for name, table in metadata.tables.items():
        columns, uniques = found[name]
        assert columns == {c.name for c in table.c}, name
        expected = {
            tuple(c.name for c in u.columns)
            for u in table.constraints
            if isinstance(u, UniqueConstraint)
        }
        assert expected <= uniques, name


async def test_upgrading_an_old_database_keeps_every_row(db_url: str) -> None:
    await migrate(db_url, "0001")
    engine = make_engine(db_url)
    old_files = [
        ("a.wav", "10.0.0.1", 7, 1),
        ("b.wav", "10.0.0.2", 7, 0),
        ("a.wav", "10.0.0.1", 7, 0),
        ("a.wav", "10.0.0.3", 8, 1),
    ]  # a duplicate row
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO fileDistribution (file, ip, batchId, ivrDone, lidDone, sttDone, "
                    "llm1Done, llm2Done) VALUES (:f, :ip, :b, :ivr, 0, 0, 0, 0)"
                ),
                [{"f": f, "ip": ip, "b": b, "ivr": ivr} for f, ip, b, ivr in old_files],
            )
            await conn.execute(
                text(
                    "INSERT INTO batchStatus (batchId, dbInsertionStatus, denoiseStatus, status) "
                    "VALUES (7, 'Complete', 'InProgress', 'dbInsertionDone')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO processing_logs (call_id, batch_id, stage_name, status, "
                    "error_message, input_payload, output_payload) "
                    "VALUES ('a.wav', 7, 'ivr', 'failure', 'boom', '{}', NULL)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO batchExecutionLog (batchId, stage, eventType, fileName, status, "
                    "totalFiles, processedFiles) VALUES (7, 'ivr', 'stage_start', NULL, "
                    "'started', 3, 0)"
                )
            )
        await engine.dispose()
        await migrate(db_url, "0002")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO fileDistribution (file, ip, batchId, denoiseDone) "
                    "VALUES ('c.wav', '10.0.0.2', 7, 1)"
                )
            )
        await engine.dispose()
        await migrate(db_url)

        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        file_distribution.c.id,
                        file_distribution.c.file,
                        file_distribution.c.ip,
                        file_distribution.c.batchId,
                        file_distribution.c.ivrDone,
                        file_distribution.c.denoiseDone,
                        file_distribution.c.fileKey,
                    ).order_by(file_distribution.c.id)
                )
            ).all()
            batch = (await conn.execute(select(batch_status))).mappings().one()
            log_rows = (
                await conn.execute(
                    select(
                        processing_logs.c.call_id,
                        processing_logs.c.batch_id,
                        processing_logs.c.error_message,
                    )
                )
            ).all()
            exec_rows = (
                await conn.execute(
                    select(batch_execution_log.c.batchId, batch_execution_log.c.status)
                )
            ).all()
        sha = {
            name: hashlib.sha256(name.encode()).hexdigest() for name in ("a.wav", "b.wav", "c.wav")
        }
        assert [tuple(r[1:6]) for r in rows] == [
            ("a.wav", "10.0.0.1", "7", 1, 0),
            ("b.wav", "10.0.0.2", "7", 0, 0),
            ("a.wav", "10.0.0.1", "7", 0, 0),
            ("a.wav", "10.0.0.3", "8", 1, 0),
            ("c.wav", "10.0.0.2", "7", 0, 1),
        ]
        keys = [r.fileKey for r in rows]
        assert keys[0] == keys[3] == sha["a.wav"] and keys[1] == sha["b.wav"]
        assert keys[2] not in sha.values() and len(keys[2]) == 64  # the duplicate's own key
        assert (
            batch["batchId"],
            batch["dbInsertionStatus"],
            batch["denoiseStatus"],
            batch["status"],
        ) == ("7", "Complete", "InProgress", "dbInsertionDone")
        assert log_rows == [("a.wav", "7", "boom")]
        assert exec_rows == [("7", "started")]

        # Events for an old file land on its old row.
        await tracker_for(engine).apply_events(
            [
                FileStageCompleted(
                    batch_id="7",
                    file_name="b.wav",
                    stage="lid",
                    context=FileContext(audio_uri="s3://b.wav", host="10.0.0.9"),
                    completed_at=T0,
                )
            ]
        )
        async with engine.connect() as conn:
            b_rows = (
                await conn.execute(
                    select(
                        file_distribution.c.ip,
                        file_distribution.c.lidDone,
                        file_distribution.c.ivrDone,
                    ).where(file_distribution.c.file == "b.wav")
                )
            ).all()
        assert b_rows == [("10.0.0.2", 1, 0)]
    finally:
        await engine.dispose()
