"""HTTP handlers of the progress page (aiohttp): read through a DashboardReader, render HTML."""

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from services.dashboard import pages
from services.dashboard.queries import DashboardReader

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Naive UTC, as the tracker stores its times."""
    return datetime.now(UTC).replace(tzinfo=None)


def make_app(
    reader: DashboardReader,
    *,
    refresh_s: int = 5,
    batches: int = 20,
    clock: Clock = utc_now,
) -> web.Application:
    def html(body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def unavailable(exc: Exception) -> web.Response:
        # The page stays up while the database is away; it reloads and recovers by itself.
        log.warning("dashboard query failed: %s", str(exc)[:300])
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        message = f"The dashboard query failed: {type(exc).__name__}: {first_line}"
        return html(pages.message_page("Database unavailable", message, refresh_s, clock()), 503)

    async def index(request: web.Request) -> web.Response:
        try:
            rows = await reader.batches(batches)
        except Exception as exc:
            return unavailable(exc)
        return html(pages.batches_page(rows, refresh_s, clock()))

    async def batch(request: web.Request) -> web.Response:
        batch_id = request.match_info["batch_id"]
        try:
            page = await reader.page(batch_id, clock())
        except Exception as exc:
            return unavailable(exc)
        if page is None:
            message = f"The tracker has no batch {batch_id!r} (yet)."
            return html(pages.message_page("Unknown batch", message, refresh_s, clock()), 404)
        return html(pages.batch_page(page, refresh_s))

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/batches/{batch_id}", batch)
    return app
