"""Fresh MariaDB databases for tests: one per test, or a second one beside it."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool


@asynccontextmanager
async def fresh_database(
    server_url: str, prefix: str = "cofi_test", keep: bool = False
) -> AsyncIterator[str]:
    """A new, empty database on the server at `server_url`; dropped afterwards unless `keep`."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    # No pooled connection may outlive a database restart in the middle of a crash scenario.
    admin = create_async_engine(server_url, poolclass=NullPool)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            async with admin.begin() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        await admin.dispose()
