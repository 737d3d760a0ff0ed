"""The upserts of fileDistribution and batchStatus, for MySQL/MariaDB and SQLite.

Both are idempotent: the file upsert applies the same merge as `FileChange.merge` (rows.py),
the batch upsert overwrites values computed under the batch's row lock (store.py).
"""

from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal_column, or_
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert

from services.tracker.rows import TERMINAL_RANK
from services.tracker.tables import FLAG_COLUMNS, batch_status, file_distribution

# --- fileDistribution -------------------------------------------------------------------


def file_upsert(mysql: bool) -> Insert:
    """INSERT ... ON DUPLICATE KEY UPDATE (MySQL) / ON CONFLICT DO UPDATE (SQLite), the same
    merge as `FileChange.merge`.

    MySQL evaluates the assignments left to right and a later one sees the columns already
    assigned, so a column is always assigned after every column whose old value it reads
    (finishedAt before terminalState, failedStage before failedAt, ...). SQLite reads old
    values throughout, so the same order is right for both.
    """
    t = file_distribution
    if mysql:
        my = mysql_insert(t)
        return my.on_duplicate_key_update(_file_assignments(my.inserted))
    lite = sqlite_insert(t)
    return lite.on_conflict_do_update(
        index_elements=[t.c.batchId, t.c.fileKey], set_=dict(_file_assignments(lite.excluded))
    )


def _file_assignments(new: Any) -> list[tuple[str, ColumnElement[Any]]]:
    old = file_distribution.c
    one: ColumnElement[Any] = literal_column("1")
    zero: ColumnElement[Any] = literal_column("0")

    def set_once(name: str) -> ColumnElement[Any]:
        return func.coalesce(old[name], new[name])

    def earliest(name: str) -> ColumnElement[Any]:
        return case(
            (old[name].is_(None), new[name]), (new[name] < old[name], new[name]), else_=old[name]
        )

    def latest(name: str) -> ColumnElement[Any]:
        return case(
            (old[name].is_(None), new[name]), (new[name] > old[name], new[name]), else_=old[name]
        )

    new_terminal_wins = _rank(new["terminalState"]) > _rank(old.terminalState)
    same_terminal = and_(
        new["terminalState"].is_not(None), new["terminalState"] == old.terminalState
    )
    newer_failure = and_(
        new["failedAt"].is_not(None), or_(old.failedAt.is_(None), new["failedAt"] > old.failedAt)
    )
    first_triage = and_(old.triageRoute.is_(None), new["triageRoute"].is_not(None))

    def when(condition: ColumnElement[bool], name: str) -> ColumnElement[Any]:
        return case((condition, new[name]), else_=old[name])

    return [
        (
            "finishedAt",
            case(
                (new_terminal_wins, new["finishedAt"]),
                (same_terminal, earliest("finishedAt")),
                else_=old.finishedAt,
            ),
        ),
        ("terminalState", when(new_terminal_wins, "terminalState")),
        ("failedStage", when(newer_failure, "failedStage")),
        ("failedError", when(newer_failure, "failedError")),
        ("failedAt", when(newer_failure, "failedAt")),
        ("triageRule", when(first_triage, "triageRule")),
        ("triageReason", when(first_triage, "triageReason")),
        ("triageRoute", set_once("triageRoute")),
        ("audioUri", set_once("audioUri")),
        # The latest assignment's host (a failover moved the file); assignment after ip.
        (
            "ip",
            case(
                (new["ip"].is_(None), old.ip),
                (old.ip.is_(None), new["ip"]),
                (new["assignment"] > old.assignment, new["ip"]),
                else_=old.ip,  # set once per assignment
            ),
        ),
        (
            "assignment",
            case(
                (
                    and_(new["ip"].is_not(None), new["assignment"] > old.assignment),
                    new["assignment"],
                ),
                else_=old.assignment,
            ),
        ),
        *(
            (name, case((new[name] == one, one), else_=func.coalesce(old[name], zero)))
            for name in FLAG_COLUMNS
        ),
        ("createdAt", earliest("createdAt")),
        ("updatedAt", latest("updatedAt")),
    ]


def _rank(state: ColumnElement[Any]) -> ColumnElement[int]:
    # Constants inline, not bound: MySQL's executemany rewrite cannot bind in the UPDATE part.
    return case(
        *(
            (state == literal_column(f"'{name}'"), literal_column(str(rank)))
            for name, rank in TERMINAL_RANK.items()
        ),
        else_=literal_column("0"),
    )


# --- batchStatus ------------------------------------------------------------------------


def batch_upsert(mysql: bool) -> Insert:
    # Every value was computed under the batch's row lock: the update simply overwrites.
    columns = [c.name for c in batch_status.c if c.name not in ("id", "batchId")]
    if mysql:
        my = mysql_insert(batch_status)
        return my.on_duplicate_key_update([(name, my.inserted[name]) for name in columns])
    lite = sqlite_insert(batch_status)
    return lite.on_conflict_do_update(
        index_elements=[batch_status.c.batchId],
        set_={name: lite.excluded[name] for name in columns},
    )
