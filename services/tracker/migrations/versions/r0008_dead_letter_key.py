"""A dead letter keeps its key whole: `deadLetters.keyB64` becomes LONGTEXT on MariaDB.

A record's key may be as large as the broker accepts, its base64 past what a TEXT column
holds; it was stored as a mark (its length and sha256) and is now stored whole, like
`valueB64`. SQLite's TEXT holds any length: nothing to change
there (and no table rebuild, so the views of 0004 stay as they are). Forward only: a
downgrade would cut the keys it holds.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from services.tracker.tables import LongText

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        op.alter_column("deadLetters", "keyB64", type_=LongText, existing_type=sa.Text())


def downgrade() -> None:
    raise NotImplementedError("0008 is forward only: TEXT would cut the keys kept whole")
