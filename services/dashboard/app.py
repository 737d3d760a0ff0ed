"""HTTP handlers of the progress page (aiohttp): read through a DashboardReader, render HTML."""

import base64
import binascii
import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from sqlalchemy.exc import SQLAlchemyError

from services.dashboard import journey_pages, pages
from services.dashboard.queries import DashboardReader

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

REALM = "cofi"
# What a database that is away raises; anything else is a bug, a generic 500 page.
DATABASE_ERRORS = (SQLAlchemyError, OSError)


def utc_now() -> datetime:
    """Naive UTC, as the tracker stores its times."""
    return datetime.now(UTC).replace(tzinfo=None)


def make_app(
    reader: DashboardReader,
    *,
    refresh_s: int = 5,
    batches: int = 20,
    clock: Clock = utc_now,
    auth: tuple[str, str] | None = None,
    redact: frozenset[str] = frozenset(),
) -> web.Application:
    """The page's routes; with `auth` (user, password) every request needs HTTP basic auth."""

    def html(body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def unavailable(exc: Exception) -> web.Response:
        # The page stays up while the database is away; it reloads and recovers by itself.
        # What went wrong goes to the log only: exception text (hosts, users, database and
        # table names, SQL) is not for visitors.
        log.warning("dashboard query failed: %s: %s", type(exc).__name__, str(exc)[:300])
        message = (
            "The page cannot read the tracker's database right now. It retries on every "
            "reload; the page's log says why."
        )
        return html(pages.message_page("Database unavailable", message, refresh_s, clock()), 503)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("the page failed on %s", request.path)
            message = "The page failed to render; the page's log says why."
            return html(pages.message_page("Error", message, 0, clock()), 500)

    middlewares: list[Middleware] = [errors]
    if auth is not None:
        middlewares.insert(0, basic_auth(*auth))

    async def index(request: web.Request) -> web.Response:
        try:
            rows = await reader.batches(batches)
        except DATABASE_ERRORS as exc:
            return unavailable(exc)
        return html(pages.batches_page(rows, refresh_s, clock()))

    async def batch(request: web.Request) -> web.Response:
        batch_id = request.match_info["batch_id"]
        try:
            page = await reader.page(batch_id, clock())
        except DATABASE_ERRORS as exc:
            return unavailable(exc)
        if page is None:
            message = f"The tracker has no batch {batch_id!r} (yet)."
            return html(pages.message_page("Unknown batch", message, refresh_s, clock()), 404)
        try:
            timeline, reasons = await reader.details(batch_id)
        except DATABASE_ERRORS as exc:
            return unavailable(exc)
        return html(pages.batch_page(page, refresh_s, timeline, reasons))

    async def file(request: web.Request) -> web.Response:
        batch_id, name = request.match_info["batch_id"], request.match_info["file"]
        try:
            journey = await reader.file(batch_id, name, redact)
        except DATABASE_ERRORS as exc:
            return unavailable(exc)
        if journey is None:
            message = f"The tracker has no file {name!r} in batch {batch_id!r} (yet)."
            return html(pages.message_page("Unknown file", message, refresh_s, clock()), 404)
        body = journey_pages.file_body(journey)
        return html(pages.layout(f"file {name}", body, refresh_s, clock()))

    async def search(request: web.Request) -> web.Response:
        query = request.query.get("q", "").strip()[:200]
        try:
            matches = await reader.search(query) if query else []
        except DATABASE_ERRORS as exc:
            return unavailable(exc)
        body = journey_pages.search_body(query, matches)
        return html(pages.layout("search", body, 0, clock()))

    app = web.Application(middlewares=middlewares)
    app.router.add_get("/", index)
    app.router.add_get("/batches/{batch_id}", batch)
    app.router.add_get("/batches/{batch_id}/files/{file:.+}", file)
    app.router.add_get("/search", search)
    return app


def _credentials(header: str) -> tuple[bytes, bytes] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


def basic_auth(user: str, password: str) -> Middleware:
    """Middleware: 401 with a `WWW-Authenticate` challenge unless the request carries `user`
    and `password` (compared in constant time, both always, so timing tells nothing)."""
    want_user, want_password = user.encode(), password.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = _credentials(request.headers.get("Authorization", ""))
        got_user, got_password = given if given is not None else (b"", b"")
        user_ok = hmac.compare_digest(got_user, want_user)
        password_ok = hmac.compare_digest(got_password, want_password)
        if given is None or not (user_ok & password_ok):
            return web.Response(
                status=401,
                text="authentication required\n",
                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            )
        return await handler(request)

    return middleware
