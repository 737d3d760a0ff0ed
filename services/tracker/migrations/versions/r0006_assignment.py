"""Failover: `fileDistribution.assignment`, which assignment of the file `ip` names.

0 is the distributor's first choice; each failover (a dead or drained host handing the file
back) counts up, and the tracker keeps the host of the highest, so `ip` follows the file.
A plain ADD COLUMN on both dialects: SQLite does not rebuild the table, so the views of 0004
stay as they are.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "fileDistribution",
        sa.Column("assignment", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("fileDistribution") as batch:
        batch.drop_column("assignment")
