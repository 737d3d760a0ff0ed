"""Alembic environment: migrations run on a connection handed over by `migrate()`, or on an
async engine built from `-x url=...`, the `database_url` attribute or TrackerSettings."""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.tracker.settings import TrackerSettings
from services.tracker.tables import metadata

config = context.config


def _url() -> str:
    given = context.get_x_argument(as_dictionary=True).get("url")
    if given:
        return given
    attribute = config.attributes.get("database_url")
    if isinstance(attribute, str):
        return attribute
    return TrackerSettings().resolved_database_url


def _run(connection: Connection) -> None:
    # render_as_batch: SQLite can only alter a table by copying it.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)  # called from code: logging is the caller's
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        context.configure(
            url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_async(_url()))


_main()
