"""A file ends only when every event of its route is applied; the latest triage decides.

`fileDistribution.appliedEvents`: the file's events the tracker has applied (file_events.py),
so a batch is not Complete while a file's earlier stage events are unread on other
partitions. NULL for rows written before: their done flags stand for their events.
`triageAssignment`, `triageAttempt`: which triage the row's decision is, so a file triaged
again (after a failover or a retry) takes the latest decision in any order of events.
Plain ADD COLUMNs: SQLite does not rebuild the table, so the views of 0004 stay as they are.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("fileDistribution", sa.Column("triageAssignment", sa.Integer()))
    op.add_column("fileDistribution", sa.Column("triageAttempt", sa.Integer()))
    op.add_column("fileDistribution", sa.Column("appliedEvents", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("fileDistribution") as batch:
        batch.drop_column("appliedEvents")
        batch.drop_column("triageAttempt")
        batch.drop_column("triageAssignment")
