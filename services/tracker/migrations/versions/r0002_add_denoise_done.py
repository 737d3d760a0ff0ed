"""The seed review's migration: `fileDistribution.denoiseDone` (its Issue 1).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from services.tracker.tables import Flag

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        # Verbatim from the review, AFTER included, so the column sits where dashboards saw it.
        op.execute(
            "ALTER TABLE fileDistribution ADD COLUMN denoiseDone TINYINT(1) DEFAULT 0 AFTER file"
        )
        return
    with op.batch_alter_table("fileDistribution") as batch:
        batch.add_column(sa.Column("denoiseDone", Flag, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("fileDistribution") as batch:
        batch.drop_column("denoiseDone")
