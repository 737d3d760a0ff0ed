"""Wiring: settings → read-only engine → dashboard reader → aiohttp app, until SIGTERM."""

import asyncio
import logging

from aiohttp import web
from sqlalchemy.ext.asyncio import create_async_engine

from services.dashboard.app import make_app
from services.dashboard.queries import DashboardReader
from services.dashboard.settings import WebSettings
from shared.logging import configure_logging
from shared.observability.service import Observability
from shared.observability.sink import database_ping
from shared.runtime.lifecycle import stop_event_on_signals

log = logging.getLogger(__name__)


async def serve(settings: WebSettings) -> None:
    engine = create_async_engine(settings.resolved_database_url, pool_pre_ping=True)
    app = make_app(
        DashboardReader(engine), refresh_s=settings.web_refresh_s, batches=settings.web_batches
    )
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
    """`python -m services.dashboard` (no arguments: everything is a setting)."""
    if argv:
        raise SystemExit(f"usage: python -m services.dashboard (settings by env), not {argv}")
    settings = WebSettings()
    configure_logging(settings.log_level, settings.log_json, service="web")
    asyncio.run(serve(settings))
