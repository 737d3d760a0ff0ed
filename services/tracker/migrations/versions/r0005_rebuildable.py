"""What makes the tables a function of the topics, and a poll's cost independent of its batch.

- `fileDistribution.stageResolutions`: per stage, the earliest event that got the file
  through it (time and kind: finished, skipped, failed); a stage's milestones are rewritten
  from these when it completes (services/tracker/milestones.py).
- `batchStatus.fileCounts`: how many files of the batch have each combination of progress
  columns, kept up to date from each poll's changes instead of a GROUP BY over the batch.
  NULL (a batch the previous version wrote) means "not counted yet": the next poll that
  touches the batch counts it once.

Only added columns (ALTER TABLE ADD COLUMN, no table rebuild, so the views stay).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("fileDistribution", sa.Column("stageResolutions", sa.Text))
    op.add_column("batchStatus", sa.Column("fileCounts", sa.Text))


def downgrade() -> None:
    op.drop_column("batchStatus", "fileCounts")
    op.drop_column("fileDistribution", "stageResolutions")
