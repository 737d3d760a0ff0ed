"""Wiring: settings → read-only engine → dashboard reader → aiohttp app, until SIGTERM."""

import logging
from typing import Any

from aiohttp import web
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.dashboard.app import make_app
from services.dashboard.queries import DashboardReader
from services.dashboard.settings import WebSettings
from shared import event_loop
from shared.logging import configure_logging
from shared.observability.service import Observability
from shared.observability.sink import database_ping
from shared.runtime.lifecycle import stop_event_on_signals
from shared.settings_env import load_settings, service_parser

log = logging.getLogger(__name__)


def read_only_engine(url: str) -> AsyncEngine:
    """An engine whose sessions cannot write, whatever the user may do: MySQL/MariaDB sessions
    are `READ ONLY` transactions, SQLite connections `query_only`. The page's own database user
    (`WEB_DATABASE_URL`, SELECT only) is the first guard; this is the second."""
    engine = create_async_engine(url, pool_pre_ping=True)
    backend = make_url(url).get_backend_name()
    statement = (
        "PRAGMA query_only = ON" if backend == "sqlite" else "SET SESSION TRANSACTION READ ONLY"
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()

    return engine


def page_engine(settings: WebSettings) -> AsyncEngine:
    if settings.web_database_url is None and settings.database_url:
        log.warning(
            "WEB_DATABASE_URL is unset: the page reads as DATABASE_URL's user, which can write "
            "(its sessions are read-only); give it a SELECT-only user (docs/operations.md)"
        )
    return read_only_engine(settings.read_database_url)


async def serve(settings: WebSettings) -> None:
    engine = page_engine(settings)
    app = make_app(
        DashboardReader(engine),
        refresh_s=settings.web_refresh_s,
        batches=settings.web_batches,
        auth=settings.auth,
        redact=settings.redact_fields,
    )
    if settings.auth is None:
        log.info("the page asks for no authentication (set WEB_AUTH_USER and WEB_AUTH_PASSWORD)")
    # /healthz, /readyz (the database answers) and /metrics on METRICS_PORT, as every service.
    observability = Observability(settings, "web")
    observability.watch_database(database_ping(engine))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        async with observability.serving():
            await _serve_page(settings, runner)
    finally:
        await runner.cleanup()
        await engine.dispose()


async def _serve_page(settings: WebSettings, runner: web.AppRunner) -> None:
    await web.TCPSite(runner, settings.web_host, settings.web_port).start()
    stop = stop_event_on_signals()
    # The line tests and scripts wait on.
    log.info("progress page ready on http://%s:%d/", settings.web_host, settings.web_port)
    await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """`cofi run web` (no options: everything is a setting)."""
    service_parser(
        "cofi run web", "The progress page: the tracker's tables as HTML.", WebSettings
    ).parse_args(argv)
    settings = load_settings(WebSettings, "cofi run web")
    configure_logging(settings.log_level, settings.log_json, service="web")
    event_loop.run(serve(settings))
