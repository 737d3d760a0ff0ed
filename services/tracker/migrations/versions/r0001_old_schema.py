"""The old batch system's four tables.

The seed review names the columns; the types are our reconstruction of the old system's
(integer batch ids, short VARCHARs). `fileDistribution` has no `denoiseDone` yet: 0002 adds it.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from services.tracker.tables import Flag

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fileDistribution",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("file", sa.String(255), nullable=False),
        sa.Column("ip", sa.String(50), nullable=False),
        sa.Column("batchId", sa.Integer, nullable=False),
        *(
            sa.Column(name, Flag, server_default="0")
            for name in ("ivrDone", "lidDone", "sttDone", "llm1Done", "llm2Done")
        ),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "batchStatus",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batchId", sa.Integer, nullable=False),
        *(
            sa.Column(name, sa.String(50), server_default="Pending")
            for name in (
                "dbInsertionStatus",
                "denoiseStatus",
                "ivrStatus",
                "lidStatus",
                "triagingStatus",
                "sttStatus",
                "llm1Status",
                "llm2Status",
                "status",
            )
        ),
        sa.UniqueConstraint("batchId", name="uq_batchStatus_batchId"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "processing_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(255)),
        sa.Column("batch_id", sa.Integer),
        sa.Column("stage_name", sa.String(50)),
        sa.Column("status", sa.String(20)),
        sa.Column("error_message", sa.Text),
        sa.Column("input_payload", sa.Text),
        sa.Column("output_payload", sa.Text),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "batchExecutionLog",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batchId", sa.Integer),
        sa.Column("stage", sa.String(50)),
        sa.Column("eventType", sa.String(50)),
        sa.Column("fileName", sa.String(255)),
        sa.Column("status", sa.String(50)),
        sa.Column("totalFiles", sa.Integer),
        sa.Column("processedFiles", sa.Integer),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    for table in ("batchExecutionLog", "processing_logs", "batchStatus", "fileDistribution"):
        op.drop_table(table)
