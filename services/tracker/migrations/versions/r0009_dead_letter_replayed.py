"""A dead letter says when `cofi retry` replayed it: `deadLetters.replayedAt`.

Filled from the `DeadLetterReplayed` event on the dead-letter topic (never by the tool
itself), so a rebuild from the topics writes the same value. Nullable: a letter never
replayed has none. A plain ADD COLUMN on both MariaDB and SQLite (no table rebuild, so the
views of 0004 stay as they are). Forward only: a downgrade would forget which letters were
replayed.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from services.tracker.tables import Timestamp

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deadLetters", sa.Column("replayedAt", Timestamp, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("0009 is forward only: it would forget which letters were replayed")
