"""The upserts of fileDistribution, batchStatus and final milestones, for MySQL/MariaDB and
SQLite.

Each overwrites the row with values computed under the batch's row lock (store.py): the
file's merged state (`FileChange.merge`, poll_changes.py), the batch's recomputed row, a milestone's
final values. Writing the same values again changes nothing.
"""

from sqlalchemy import Table
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert

from services.tracker.tables import batch_execution_log, batch_status, file_distribution

# --- fileDistribution -------------------------------------------------------------------


def file_upsert(mysql: bool) -> Insert:
    """INSERT ... ON DUPLICATE KEY UPDATE (MySQL) / ON CONFLICT DO UPDATE (SQLite) that
    overwrites: the poll read the file's row under its batch's lock and merged its events
    into it in Python (`FileChange.merge`), so the row it writes is the new state."""
    t = file_distribution
    return _overwrite(
        t, mysql, keep=("id", "batchId", "fileKey", "file"), key=("batchId", "fileKey")
    )


def _overwrite(table: Table, mysql: bool, *, keep: tuple[str, ...], key: tuple[str, ...]) -> Insert:
    columns = [c.name for c in table.c if c.name not in keep]
    if mysql:
        my = mysql_insert(table)
        return my.on_duplicate_key_update([(name, my.inserted[name]) for name in columns])
    lite = sqlite_insert(table)
    return lite.on_conflict_do_update(
        index_elements=[table.c[k] for k in key],
        set_={name: lite.excluded[name] for name in columns},
    )


# --- batchExecutionLog ------------------------------------------------------------------


def log_upsert(mysql: bool) -> Insert:
    """A milestone's final values (milestones.py) replace the provisional ones."""
    return _overwrite(batch_execution_log, mysql, keep=("id", "eventKey"), key=("eventKey",))


# --- batchStatus ------------------------------------------------------------------------


def batch_upsert(mysql: bool) -> Insert:
    # Every value was computed under the batch's row lock: the update simply overwrites.
    return _overwrite(batch_status, mysql, keep=("id", "batchId"), key=("batchId",))
