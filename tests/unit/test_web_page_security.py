"""The progress page's guards, on the embedded SQLite (no infrastructure): HTTP basic auth,
no exception text for visitors, a connection that cannot write."""

import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from aiohttp import web
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from services.dashboard.app import make_app
from services.dashboard.main import page_engine, read_only_engine
from services.dashboard.progress import BatchRow
from services.dashboard.queries import DashboardReader
from services.dashboard.settings import WebSettings
from services.tracker.migrate import migrate
from tests.web_helpers import free_port

INSERT = "INSERT INTO batchStatus (batchId) VALUES ('written-by-the-page')"


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[httpx.AsyncClient]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        await runner.cleanup()


@pytest.fixture
async def db_url(sqlite_url: str) -> str:
    await migrate(sqlite_url)
    return sqlite_url


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_with_auth_the_page_answers_401_with_a_challenge_unless_the_credentials_match(
    db_url: str,
) -> None:
    engine = read_only_engine(db_url)
    app = make_app(DashboardReader(engine), auth=("sre", "s3cret-pässword"))
    try:
        async with serving(app) as client:
            for headers in (
                {},
                _basic("sre", "wrong"),
                _basic("other", "s3cret-pässword"),
                _basic("sre", ""),
                {"Authorization": "Basic not-base64!"},
                {"Authorization": "Bearer s3cret"},
            ):
                r = await client.get("/", headers=headers)
                assert r.status_code == 401, headers
                assert r.headers["WWW-Authenticate"].startswith('Basic realm="cofi"')
                assert "Recent batches" not in r.text
            r = await client.get("/batches/b1", headers=_basic("sre", "wrong"))
            assert r.status_code == 401
            ok = await client.get("/", headers=_basic("sre", "s3cret-pässword"))
            assert ok.status_code == 200 and "Recent batches" in ok.text
    finally:
        await engine.dispose()


async def test_without_auth_settings_the_page_asks_for_nothing(db_url: str) -> None:
    engine = read_only_engine(db_url)
    try:
        async with serving(make_app(DashboardReader(engine))) as client:
            r = await client.get("/")
        assert r.status_code == 200 and "WWW-Authenticate" not in r.headers
    finally:
        await engine.dispose()


async def test_a_broken_database_shows_a_generic_page_and_logs_the_details(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = f"sqlite+aiosqlite:///{tmp_path}/no-such-dir/secret-name.db"
    engine = read_only_engine(gone)
    try:
        with caplog.at_level(logging.WARNING, logger="services.dashboard.app"):
            async with serving(make_app(DashboardReader(engine))) as client:
                index = await client.get("/")
                batch = await client.get("/batches/b1")
        for r in (index, batch):
            assert r.status_code == 503 and "Database unavailable" in r.text
            for secret in ("secret-name", "no-such-dir", "OperationalError", "sqlite", "unable"):
                assert secret not in r.text
        assert "unable to open database file" in caplog.text
    finally:
        await engine.dispose()


class _Failing(DashboardReader):
    async def batches(self, limit: int = 20) -> list[BatchRow]:
        raise RuntimeError("internal detail: /etc/cofi/secret.conf")


async def test_an_unexpected_error_is_a_generic_500_page(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = read_only_engine(db_url)
    try:
        with caplog.at_level(logging.WARNING, logger="services.dashboard.app"):
            async with serving(make_app(_Failing(engine), refresh_s=0)) as client:
                r = await client.get("/")
        assert r.status_code == 500 and "Error" in r.text
        assert "internal detail" not in r.text and "secret.conf" not in r.text
        assert "RuntimeError" not in r.text and "Traceback" not in r.text
        assert "secret.conf" in caplog.text
    finally:
        await engine.dispose()


async def test_the_pages_engine_reads_but_cannot_write_on_sqlite(db_url: str) -> None:
    engine = page_engine(WebSettings(database_url=db_url))
    writer = create_async_engine(db_url)
    try:
        assert await DashboardReader(engine).batches() == []
        with pytest.raises(DBAPIError, match="readonly database"):
            async with engine.begin() as conn:
                await conn.execute(text(INSERT))
        async with writer.begin() as conn:  # the same statement, by the tracker, succeeds
            await conn.execute(text(INSERT))
        (row,) = await DashboardReader(engine).batches()
        assert row.batch_id == "written-by-the-page"
    finally:
        await engine.dispose()
        await writer.dispose()


def test_the_page_reads_with_its_own_url_when_set() -> None:
    settings = WebSettings(
        database_url="mysql+asyncmy://cofi:cofi@db/cofi",
        web_database_url="mysql+asyncmy://cofi_ro:ro@db/cofi",
    )
    assert settings.read_database_url == "mysql+asyncmy://cofi_ro:ro@db/cofi"
    assert "cofi_ro:ro" not in repr(settings)  # a secret, never logged
    assert WebSettings(database_url="sqlite+aiosqlite:///x.db").read_database_url.endswith("x.db")


def test_auth_needs_both_user_and_password() -> None:
    assert WebSettings().auth is None
    both = WebSettings(web_auth_user="sre", web_auth_password="pw")
    assert both.auth == ("sre", "pw") and "pw" not in repr(both)
    with pytest.raises(ValidationError, match="set together"):
        WebSettings(web_auth_user="sre")


def test_the_stacks_page_reads_as_a_user_granted_select_only() -> None:
    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    url = make_url(compose["services"]["web"]["environment"]["WEB_DATABASE_URL"])
    db = make_url(compose["x-cofi-env"]["DATABASE_URL"])
    assert url.username != db.username and url.database == db.database
    grants = [
        line
        for script in (root / "deploy" / "mariadb" / "init").glob("*.sh")
        for line in script.read_text().splitlines()
        if line.startswith("GRANT") and f"'{url.username}'@" in line
    ]
    # MARIADB_DATABASE is the compose database (`DB_NAME`) the image's entrypoint created.
    assert grants == [f"GRANT SELECT ON \\`${{MARIADB_DATABASE}}\\`.* TO '{url.username}'@'%';"]
