"""The tables against a rebuild from the topics, as `tests/crash/rebuild.py` makes it (a
third tracker, its own group, an empty database), saying which columns differ and how."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from services.tracker.settings import TrackerSettings
from shared.settings import parse_gpu_hosts
from tests.crash.harness import ChaosRun
from tests.crash.infra import fresh_database
from tests.crash.rebuild import _end_offsets, _track_to
from tests.tracker_scenario import TABLES


async def rebuild_differences(run: ChaosRun) -> list[str]:
    settings = TrackerSettings(
        kafka_bootstrap_servers=run.config.bootstrap,
        topic_prefix=run.config.topic_prefix,
        gpu_hosts=parse_gpu_hosts(run.config.gpu_hosts),
        stage_partitions=run.config.partitions,
        tracker_group_id=f"{run.config.topic_prefix}-tracker-rebuild-check",
        log_json=False,
    )
    topics = settings.topics.all_topics(settings.host_ips)
    ends = await _end_offsets(run.config.bootstrap, topics, run.config.partitions)
    server = make_url(run.config.database_url).set(database=None)
    async with fresh_database(server.render_as_string(hide_password=False)) as url:
        await _track_to(settings.model_copy(update={"database_url": url}), ends)
        rebuilt = create_async_engine(url, poolclass=NullPool)
        try:
            ours, theirs = await dump(run.engine), await dump(rebuilt)
        finally:
            await rebuilt.dispose()
    return [d for table, _ in TABLES if (d := _differ(table, ours, theirs))]


async def dump(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table without its id, in (batch, natural key) order: a game day's
    batches share file names, so a file's key alone does not order its rows."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        for table, key in TABLES:
            columns = [c for c in table.c if c.name != "id"]
            batch = [table.c[n] for n in ("batchId", "batch_id") if n in table.c]
            rows = await conn.execute(select(*columns).order_by(*batch, table.c[key]))
            out[table.name] = [tuple(r) for r in rows]
    return out


def _differ(table: Any, ours: dict[str, list[Any]], theirs: dict[str, list[Any]]) -> str:
    a, b = ours[table.name], theirs[table.name]
    if a == b:
        return ""
    names = [c.name for c in table.c if c.name != "id"]
    if len(a) != len(b):
        return f"{table.name}: {len(a)} rows, the rebuild {len(b)}{_rows_apart(a, b)}"
    columns: dict[str, int] = {}
    example: dict[str, str] = {}
    for mine, rebuilt in zip(a, b, strict=True):
        for name, x, y in zip(names, mine, rebuilt, strict=True):
            if x != y:
                columns[name] = columns.get(name, 0) + 1
                example.setdefault(name, f"{str(x)[:60]!r} vs {str(y)[:60]!r}")
    said = ", ".join(f"{n} in {k} rows (e.g. {example[n]})" for n, k in columns.items())
    return f"{table.name}: {said}"


def _rows_apart(ours: list[Any], theirs: list[Any]) -> str:
    """A few rows found on one side only, so that a count that differs names its rows (as
    text: a JSON column's value is a list, which a set cannot hold)."""
    mine, rebuilt = [repr(r) for r in ours], [repr(r) for r in theirs]
    in_mine, in_rebuilt = set(mine), set(rebuilt)
    shown = [f"only in the tables: {r[:240]}" for r in mine if r not in in_rebuilt][:3]
    shown += [f"only in the rebuild: {r[:240]}" for r in rebuilt if r not in in_mine][:3]
    return "; " + "; ".join(shown) if shown else ""
