"""The Grafana dashboard's SQL (deploy/grafana/dashboards/cofi.json) runs against MariaDB with
the tracker's migrations, and returns the batch the tracker wrote."""

import json
import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cli.grafana_dashboard import PATH
from services.tracker.migrate import migrate
from shared.stages import STAGES
from tests.tracker_scenario import build_scenario, tracked, tracker_for

BATCH = "batch-300"


def as_sql(grafana_sql: str, batch: str) -> str:
    """What Grafana sends for `${batch:sqlstring}`; any other macro would be left unexpanded."""
    sql = grafana_sql.replace("${batch:sqlstring}", "'" + batch.replace("'", "''") + "'")
    assert not re.search(r"\$\{?\w", sql), f"an unexpanded Grafana macro in: {sql}"
    return sql


async def test_every_panel_and_the_batch_variable_run_and_see_the_batch(mariadb_url: str) -> None:
    dashboard = json.loads(PATH.read_text())
    queries = {p["title"]: t["rawSql"] for p in dashboard["panels"] for t in p["targets"]}
    (variable,) = dashboard["templating"]["list"]
    await migrate(mariadb_url)
    engine = create_async_engine(mariadb_url)
    try:
        await tracker_for(engine).apply_events(tracked(build_scenario(BATCH)))
        async with engine.connect() as conn:
            ids = (await conn.execute(text(as_sql(variable["query"], BATCH)))).scalars().all()
            assert ids == [BATCH]
            rows = {}
            for title, sql in queries.items():
                result = await conn.execute(text(as_sql(sql, BATCH)))
                rows[title] = result.mappings().all()
                assert rows[title], f"panel {title!r} returned no rows"
            # A batch id with a quote is a value, not SQL.
            odd = await conn.execute(text(as_sql(queries["Stage progress: $batch"], "x' OR '1")))
            assert odd.all() == []
    finally:
        await engine.dispose()
    progress = rows["Stage progress: $batch"]
    assert [r["stage"] for r in progress] == ["distribute", *STAGES]
    assert {r["stageStatus"] for r in progress} == {"Complete"}
    per_minute = rows["Files per minute: $batch"]
    assert set(per_minute[0]) == {"time", "metric", "value"}
    assert {r["metric"] for r in per_minute} == set(STAGES)
    assert [r["batchId"] for r in rows["Recent batches"]] == [BATCH]
