"""Bulk statements (executemany) sent to the driver precompiled, and the insert-ignore.

Why: SQLAlchemy's own executemany builds, caches and walks each row's parameters, a large
share of the tracker's CPU (bench/FINDINGS.md, proposal 5). This relies on SQLAlchemy
internals (`Compiled.positiontup`, `Compiled.binds`, a type's `bind_processor`): tested with
SQLAlchemy 2.1.9, hence the `<2.2` pin in pyproject.toml; after an upgrade,
`tests/integration/test_tracker_tables.py::test_mysql_bulk_writes_match_sqlalchemys_own` must
pass (the tables equal those of SQLAlchemy's own executemany).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Table, insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

Params = dict[str, Any]


async def insert_ignore(
    conn: AsyncConnection, table: Table, rows: Sequence[Params], mysql: bool
) -> None:
    if not rows:
        return

    def statement() -> Insert:
        if mysql:
            return insert(table).prefix_with("IGNORE")
        return sqlite_insert(table).on_conflict_do_nothing()

    await execute_many(conn, f"insert ignore {table.name}", statement, rows)


@dataclass(frozen=True)
class _Prepared:
    """A statement compiled once for a dialect, and how to put a row's values in its order."""

    sql: str
    values: Callable[[Params], tuple[Any, ...]]


# Per dialect (one per engine) and statement: compiled SQL, or None where SQLAlchemy must run it.
_prepared: "WeakKeyDictionary[Dialect, dict[tuple[str, tuple[str, ...]], _Prepared | None]]" = (
    WeakKeyDictionary()
)


async def execute_many(
    conn: AsyncConnection, name: str, statement: Callable[[], Insert], rows: Sequence[Params]
) -> None:
    """`conn.execute(statement(), rows)`, without SQLAlchemy's work per row.

    With MySQL's positional parameters and no type that converts a value on its way in (every
    column here), SQLAlchemy hands the driver the compiled SQL and each row's values in order;
    so do we, from a statement compiled once, and skip building, caching and walking its
    parameters for every row. The driver then sends the rows in a few multi-row statements,
    as it did. Anything else (SQLite's named parameters) goes through SQLAlchemy.
    """
    if not rows:
        return
    dialect = conn.dialect
    key = (name, tuple(rows[0]))
    cache = _prepared.setdefault(dialect, {})
    if key not in cache:
        cache[key] = _prepare(statement(), dialect, key[1])
    prepared = cache[key]
    if prepared is None:
        await conn.execute(statement(), list(rows))
    else:
        await conn.exec_driver_sql(prepared.sql, [prepared.values(row) for row in rows])


def _prepare(statement: Insert, dialect: Dialect, keys: tuple[str, ...]) -> _Prepared | None:
    if dialect.paramstyle != "format" or len(keys) < 2:
        return None
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    names = compiled.positiontup or []
    binds = [compiled.binds[name] for name in names]
    if set(names) != set(keys) or any(
        b.type.dialect_impl(dialect).bind_processor(dialect) is not None for b in binds
    ):
        return None
    return _Prepared(compiled.string, itemgetter(*names))
