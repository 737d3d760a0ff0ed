"""A batch's `resolutionsDigest`: the XOR of its files' resolution hashes.

It tells the tracker whether the index of a batch's resolutions it kept from its last poll
still matches the files (resolution_index.py), so that a running stage's milestones follow
the rule of a completed one after every poll without reading every file. A function of the
file rows, so a rebuild writes the same value. Nullable: a batch written before is read whole
once, and gets its digest then. A plain ADD COLUMN on both MariaDB and SQLite.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batchStatus", sa.Column("resolutionsDigest", sa.BigInteger, nullable=True))


def downgrade() -> None:
    op.drop_column("batchStatus", "resolutionsDigest")
