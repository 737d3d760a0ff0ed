"""Rows to statement parameters (and a batchStatus row back), derived from the row dataclasses
(poll_changes.py, batch_status.py) and the tables (tables.py), so a new column is one field.

A field fills the column of its own name when the table has one (the seed's snake_case
columns: `call_id`, `stage_name`), else the column of its camelCase name (`attempt_key` ->
`attemptKey`). A field without a column fails at import, not in a poll.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import Column, Table
from sqlalchemy.engine import RowMapping
from sqlalchemy.schema import DefaultClause

from services.tracker.batch_status import BatchStatusRow
from services.tracker.bulk_insert import Params
from services.tracker.file_events import decode_events, encode_events
from services.tracker.poll_changes import AttemptRow, DeadLetterRow, FileChange, LogRow, file_key
from services.tracker.resolutions import decode_resolutions, encode_resolutions
from services.tracker.tables import (
    FLAG_COLUMNS,
    STATUS_COLUMNS,
    batch_execution_log,
    batch_status,
    dead_letters,
    file_distribution,
    processing_logs,
)

R = TypeVar("R")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class RowColumns(Generic[R]):
    """Which column each field of a row type fills."""

    def __init__(
        self,
        row_type: type[R],
        table: Table,
        *,
        skip: Collection[str] = (),
        renames: Mapping[str, str] | None = None,
    ) -> None:
        renames = renames or {}
        pairs: list[tuple[str, str]] = []
        for f in fields(row_type):  # type: ignore[arg-type]
            if f.name in skip:
                continue
            column = renames.get(f.name) or (f.name if f.name in table.c else camel(f.name))
            if column not in table.c:
                raise LookupError(f"{row_type.__name__}.{f.name}: {table.name} has no {column}")
            pairs.append((f.name, column))
        self.table = table
        self.fields = tuple(f for f, _ in pairs)
        self.columns = tuple(c for _, c in pairs)
        # One C-level call per row for every field's value (rows come by the thousand).
        self._values = attrgetter(*self.fields)

    def params(self, row: R) -> Params:
        return dict(zip(self.columns, self._values(row), strict=True))

    def values(self, mapping: RowMapping) -> dict[str, Any]:
        """A table row's values by field name; NULL in a column with a server default (a row
        the old system wrote) reads as that default."""
        return {
            f: _or_default(self.table.c[c], mapping[c])
            for f, c in zip(self.fields, self.columns, strict=True)
        }


def _or_default(column: Column[Any], value: Any) -> Any:
    default = column.server_default
    if isinstance(default, DefaultClause) and isinstance(default.arg, str):
        return value or column.type.python_type(default.arg)
    return value


ATTEMPT: Final = RowColumns(AttemptRow, processing_logs)
LOG: Final = RowColumns(LogRow, batch_execution_log)
DEAD_LETTER: Final = RowColumns(DeadLetterRow, dead_letters)
# `flags` are one column per flag, `resolutions` one text column, and the unique key is a
# hash of the name.
FILE: Final = RowColumns(
    FileChange,
    file_distribution,
    skip={"flags", "resolutions", "applied_events"},
    renames={"file_name": "file"},
)
# What a poll reads of a file's row to merge its changes into (file_change), in this order.
FILE_READ_COLUMNS: Final = (*FILE.columns, *FLAG_COLUMNS, "stageResolutions", "appliedEvents")
_FIELDS: Final = len(FILE.columns)
_FLAGS_END: Final = _FIELDS + len(FLAG_COLUMNS)
# One frozenset per combination of flags a row shows, not one per row.
_FLAG_SETS: dict[tuple[Any, ...], frozenset[str]] = {}
# `statuses` are one column per stage.
BATCH: Final = RowColumns(BatchStatusRow, batch_status, skip={"statuses"})


def file_params(c: FileChange) -> Params:
    params = FILE.params(c)
    params["fileKey"] = file_key(c.file_name)
    for name in FLAG_COLUMNS:
        params[name] = 1 if name in c.flags else 0
    params["stageResolutions"] = encode_resolutions(c.resolutions)
    params["appliedEvents"] = encode_events(c.applied_events)
    return params


def file_change(row: Sequence[Any]) -> FileChange:
    """A fileDistribution row (its `FILE_READ_COLUMNS`, in order) as the change that would
    create it: what a poll merges its changes into. Positional, as rows come by the thousand
    (none of these columns has a server default to stand in for NULL)."""
    marks = tuple(row[_FIELDS:_FLAGS_END])
    flags = _FLAG_SETS.get(marks)
    if flags is None:
        flags = _FLAG_SETS[marks] = frozenset(
            name for name, mark in zip(FLAG_COLUMNS, marks, strict=True) if mark
        )
    return FileChange(
        **dict(zip(FILE.fields, row[:_FIELDS], strict=True)),
        flags=flags,
        resolutions=decode_resolutions(row[_FLAGS_END]),
        applied_events=decode_events(row[_FLAGS_END + 1]),
    )


def batch_params(r: BatchStatusRow) -> Params:
    return {**BATCH.params(r), **dict(r.statuses)}


def batch_row(m: RowMapping) -> BatchStatusRow:
    statuses = tuple((name, _or_default(batch_status.c[name], m[name])) for name in STATUS_COLUMNS)
    return BatchStatusRow(statuses=statuses, **BATCH.values(m))
