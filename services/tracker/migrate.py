"""Bring a database to the newest schema: wait until it answers, then `alembic upgrade`.

Callable from code (`await migrate(url)`) and from the shell
(`python -m services.tracker migrate` or `alembic -c services/tracker/alembic.ini upgrade head`).
"""

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from shared.keep_trying import Backoff, keep_trying

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    if url is not None:
        # An attribute, not `sqlalchemy.url`: ini interpolation would mangle a '%' in it.
        cfg.attributes["database_url"] = url
    return cfg


async def wait_for_database(engine: AsyncEngine, timeout_s: float) -> None:
    """Return once the database answers; raise the last error after `timeout_s`."""

    async def select_1() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    await keep_trying(
        select_1,
        retry_on=Exception,
        what="database not ready",
        backoff=Backoff(first_delay_s=0.5, max_delay_s=5.0),
        deadline_s=timeout_s,
        logger=log,
    )


async def migrate(url: str, revision: str = "head", *, wait_s: float = 120.0) -> None:
    """Upgrade the database at `url` to `revision` (default: the newest)."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        await wait_for_database(engine, wait_s)
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, alembic_config(url), revision)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, cfg: Config, revision: str) -> None:
    # env.py runs the migrations on this connection instead of opening its own.
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)
