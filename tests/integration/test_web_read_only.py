"""The progress page on MariaDB reads through a user that cannot write, over sessions that
cannot write; and a database it cannot reach never shows its details to visitors."""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from services.dashboard.app import make_app
from services.dashboard.main import page_engine, read_only_engine
from services.dashboard.queries import DashboardReader
from services.dashboard.settings import WebSettings
from services.tracker.migrate import migrate
from tests.web_helpers import free_port

INSERT = "INSERT INTO batchStatus (batchId) VALUES ('written-by-the-page')"


@pytest.fixture
async def read_only_url(mariadb_url: str) -> AsyncIterator[str]:
    """A migrated database and the URL of a user with SELECT on it only (as `cofi_ro` from
    infra/mariadb.sh has on `cofi`)."""
    await migrate(mariadb_url)
    url = make_url(mariadb_url)
    user, password = f"ro_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    admin = create_async_engine(mariadb_url)
    async with admin.begin() as conn:
        for host in ("127.0.0.1", "localhost"):
            await conn.execute(text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"))
            await conn.execute(text(f"GRANT SELECT ON `{url.database}`.* TO '{user}'@'{host}'"))
    try:
        yield url.set(username=user, password=password).render_as_string(hide_password=False)
    finally:
        async with admin.begin() as conn:
            for host in ("127.0.0.1", "localhost"):
                await conn.execute(text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
        await admin.dispose()


async def test_the_pages_user_reads_but_cannot_insert(mariadb_url: str, read_only_url: str) -> None:
    settings = WebSettings(database_url=mariadb_url, web_database_url=read_only_url)
    engine = page_engine(settings)
    bare = create_async_engine(read_only_url)  # the user alone, without read-only sessions
    writer = create_async_engine(mariadb_url)
    try:
        async with writer.begin() as conn:  # the tracker's user can
            await conn.execute(text(INSERT))
        (row,) = await DashboardReader(engine).batches()
        assert row.batch_id == "written-by-the-page"
        for eng in (engine, bare):
            with pytest.raises(DBAPIError, match="INSERT command denied"):
                async with eng.begin() as conn:
                    await conn.execute(text(INSERT.replace("page'", "page-2'")))
    finally:
        for eng in (engine, bare, writer):
            await eng.dispose()


async def test_the_pages_sessions_are_read_only_even_for_a_user_that_can_write(
    mariadb_url: str,
) -> None:
    await migrate(mariadb_url)
    engine = read_only_engine(mariadb_url)  # WEB_DATABASE_URL unset: DATABASE_URL's user
    try:
        assert await DashboardReader(engine).batches() == []
        with pytest.raises(DBAPIError, match="READ ONLY"):
            async with engine.begin() as conn:
                await conn.execute(text(INSERT))
    finally:
        await engine.dispose()


async def test_an_unreachable_database_is_a_generic_page_without_its_details(
    mariadb_server_url: str,
) -> None:
    gone = make_url(mariadb_server_url).set(database="cofi_no_such_database")
    engine = read_only_engine(gone.render_as_string(hide_password=False))
    runner = web.AppRunner(make_app(DashboardReader(engine)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.get(f"http://127.0.0.1:{port}/")
        assert r.status_code == 503 and "Database unavailable" in r.text
        for detail in ("cofi_no_such_database", "Unknown database", "OperationalError", "1049"):
            assert detail not in r.text
    finally:
        await runner.cleanup()
        await engine.dispose()
