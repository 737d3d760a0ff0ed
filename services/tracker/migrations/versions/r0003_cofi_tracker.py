"""cofi's additions for the tracker.

Keys that make the tracker's writes idempotent, terminal states, timestamps, totals, and
the deadLetters table. Only additions and widenings: every old column keeps its name,
every row is kept.

- batch ids become VARCHAR(64) (the upload system's ids are strings; old integers convert);
- file names become TEXT (they may be 1,000 characters) and get `fileKey` = sha256 hex of
  the name, filled here for existing rows, so that (batchId, fileKey) can be unique;
- model payloads become LONGTEXT (transcripts and LLM output outgrow TEXT's 65,535 bytes).

Revision ID: 0003
Revises: 0002
"""

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from services.tracker.tables import Key, LongText, Timestamp

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_FILE_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("audioUri", sa.Text),
    ("terminalState", sa.String(16)),
    ("failedStage", sa.String(16)),
    ("failedError", sa.Text),
    ("failedAt", Timestamp),
    ("triageRoute", sa.String(8)),
    ("triageRule", sa.String(255)),
    ("triageReason", sa.Text),
    ("createdAt", Timestamp),
    ("updatedAt", Timestamp),
    ("finishedAt", Timestamp),
)
_BATCH_COUNTS = ("knownFiles", "doneFiles", "skippedFiles", "failedFiles")
_BATCH_TIMES = ("createdAt", "updatedAt", "closedAt", "completedAt")
_LOG_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("attempt", sa.Integer),
    ("host", sa.String(255)),
    ("errorKind", sa.String(16)),
    ("startedAt", Timestamp),
    ("durationMs", sa.Double),
)
_EXECUTION_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("failedFiles", sa.Integer),
    ("skippedFiles", sa.Integer),
    ("createdAt", Timestamp),
)


def upgrade() -> None:
    with op.batch_alter_table("fileDistribution") as batch:
        batch.alter_column(
            "file", type_=sa.Text(), existing_type=sa.String(255), existing_nullable=False
        )
        # NULL until the distributor assigned a host: the upload creates the row now.
        batch.alter_column(
            "ip",
            type_=sa.String(255),
            existing_type=sa.String(50),
            nullable=True,
            existing_nullable=False,
        )
        batch.alter_column(
            "batchId", type_=sa.String(64), existing_type=sa.Integer(), existing_nullable=False
        )
        batch.add_column(sa.Column("fileKey", Key))
        for name, type_ in _FILE_COLUMNS:
            batch.add_column(sa.Column(name, type_))
    _fill_file_keys()
    with op.batch_alter_table("fileDistribution") as batch:
        batch.alter_column("fileKey", existing_type=Key, nullable=False)
        batch.create_unique_constraint("uq_fileDistribution_batch_file", ["batchId", "fileKey"])

    with op.batch_alter_table("batchStatus") as batch:
        batch.alter_column(
            "batchId", type_=sa.String(64), existing_type=sa.Integer(), existing_nullable=False
        )
        batch.add_column(sa.Column("totalFiles", sa.Integer))
        for name in _BATCH_COUNTS:
            batch.add_column(sa.Column(name, sa.Integer, nullable=False, server_default="0"))
        for name in _BATCH_TIMES:
            batch.add_column(sa.Column(name, Timestamp))

    with op.batch_alter_table("processing_logs") as batch:
        batch.alter_column("call_id", type_=sa.Text(), existing_type=sa.String(255))
        batch.alter_column("batch_id", type_=sa.String(64), existing_type=sa.Integer())
        for name in ("input_payload", "output_payload"):
            batch.alter_column(name, type_=LongText, existing_type=sa.Text())
        batch.add_column(sa.Column("attemptKey", Key))
        for name, type_ in _LOG_COLUMNS:
            batch.add_column(sa.Column(name, type_))
        batch.create_unique_constraint("uq_processing_logs_attemptKey", ["attemptKey"])
        batch.create_index("ix_processing_logs_batch_stage", ["batch_id", "stage_name"])

    with op.batch_alter_table("batchExecutionLog") as batch:
        batch.alter_column("batchId", type_=sa.String(64), existing_type=sa.Integer())
        batch.alter_column("fileName", type_=sa.Text(), existing_type=sa.String(255))
        # A file_error row's status is the error text.
        batch.alter_column("status", type_=sa.Text(), existing_type=sa.String(50))
        batch.add_column(sa.Column("eventKey", Key))
        for name, type_ in _EXECUTION_COLUMNS:
            batch.add_column(sa.Column(name, type_))
        batch.create_unique_constraint("uq_batchExecutionLog_eventKey", ["eventKey"])
        batch.create_index("ix_batchExecutionLog_batch_stage", ["batchId", "stage", "eventType"])

    op.create_table(
        "deadLetters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("letterKey", Key, nullable=False),
        sa.Column("sourceTopic", sa.String(255), nullable=False),
        sa.Column("sourcePartition", sa.Integer, nullable=False),
        sa.Column("sourceOffset", sa.BigInteger, nullable=False),
        sa.Column("stage", sa.String(32)),
        sa.Column("consumer", sa.String(255)),
        sa.Column("error", sa.Text),
        sa.Column("batchId", sa.String(64)),
        sa.Column("fileName", sa.Text),
        sa.Column("keyB64", sa.Text),
        sa.Column("valueB64", LongText),
        sa.Column("createdAt", Timestamp),
        sa.UniqueConstraint("letterKey", name="uq_deadLetters_letterKey"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_deadLetters_batchId", "deadLetters", ["batchId"])


def _fill_file_keys() -> None:
    """fileKey of existing rows: sha256 hex of the file name, as the tracker computes it.

    The old system may have inserted a file twice into a batch. Both rows are kept; the
    first (lowest id) gets the real key, so events for the file update it, and later
    duplicates get a key derived from their id, which keeps the unique key satisfiable.
    """
    bind = op.get_bind()
    t = sa.table(
        "fileDistribution",
        sa.column("id"),
        sa.column("batchId"),
        sa.column("file"),
        sa.column("fileKey"),
    )
    updates: dict[int, str] = {}
    if bind.dialect.name in ("mysql", "mariadb"):
        # In the server: SHA2 of the utf8mb4 bytes equals Python's sha256 of the UTF-8 name.
        bind.execute(sa.update(t).values(fileKey=sa.func.sha2(t.c.file, 256)))
        query = sa.select(t.c.id, t.c.batchId, t.c.fileKey).order_by(t.c.id)
        keyed = [(row_id, str(batch_id), key) for row_id, batch_id, key in bind.execute(query)]
    else:
        query = sa.select(t.c.id, t.c.batchId, t.c.file).order_by(t.c.id)
        keyed = [
            (row_id, str(batch_id), hashlib.sha256(name.encode()).hexdigest())
            for row_id, batch_id, name in bind.execute(query)
        ]
        updates = {row_id: key for row_id, _, key in keyed}
    seen: set[tuple[str, str]] = set()
    for row_id, batch_id, key in keyed:
        if (batch_id, key) in seen:
            key = updates[row_id] = hashlib.sha256(
                json.dumps(["duplicate", row_id, key]).encode()
            ).hexdigest()
        seen.add((batch_id, key))
    if updates:
        bind.execute(
            sa.update(t)
            .where(t.c.id == sa.bindparam("row_id"))
            .values(fileKey=sa.bindparam("key")),
            [{"row_id": row_id, "key": key} for row_id, key in updates.items()],
        )


def downgrade() -> None:
    """Back to 0002's columns. Widened types stay wide (narrowing could lose data)."""
    op.drop_index("ix_deadLetters_batchId", table_name="deadLetters")
    op.drop_table("deadLetters")
    with op.batch_alter_table("batchExecutionLog") as batch:
        batch.drop_index("ix_batchExecutionLog_batch_stage")
        batch.drop_constraint("uq_batchExecutionLog_eventKey", type_="unique")
        for name in ("eventKey", *(n for n, _ in _EXECUTION_COLUMNS)):
            batch.drop_column(name)
    with op.batch_alter_table("processing_logs") as batch:
        batch.drop_index("ix_processing_logs_batch_stage")
        batch.drop_constraint("uq_processing_logs_attemptKey", type_="unique")
        for name in ("attemptKey", *(n for n, _ in _LOG_COLUMNS)):
            batch.drop_column(name)
    with op.batch_alter_table("batchStatus") as batch:
        for name in ("totalFiles", *_BATCH_COUNTS, *_BATCH_TIMES):
            batch.drop_column(name)
    with op.batch_alter_table("fileDistribution") as batch:
        batch.drop_constraint("uq_fileDistribution_batch_file", type_="unique")
        for name in ("fileKey", *(n for n, _ in _FILE_COLUMNS)):
            batch.drop_column(name)
