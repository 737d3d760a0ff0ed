"""What several commands share: settings, the tracker's database, argument types and the
synthetic calls' options. Light to import: every command's arguments are declared at start."""

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic_settings import BaseSettings

from cli.errors import CliError, Exit
from shared.database_settings import EMBEDDED_DATABASE_URL, DatabaseSettings
from shared.settings_env import load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from cli.audio import CallLengths

    # What a command group's `add` gets (cli/main.py, COMMANDS).
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

S = TypeVar("S", bound=BaseSettings)

# What to write instead of a URL whose driver is blocking or missing, by database.
ASYNC_URLS = {
    "mysql": "mysql+asyncmy://…",
    "mariadb": "mysql+asyncmy://…",
    "sqlite": "sqlite+aiosqlite:///…",
}
ANY_ASYNC_URL = "mysql+asyncmy://… (MariaDB) or sqlite+aiosqlite:///…"


def settings(cls: type[S], ns: argparse.Namespace) -> S:
    return load_settings(cls, f"cofi {ns.command}")


def database_configured(ns: argparse.Namespace) -> bool:
    """Whether there is a tracker database to read: `DATABASE_URL` set, or ./cofi.db there."""
    url = settings(DatabaseSettings, ns).resolved_database_url
    return url != EMBEDDED_DATABASE_URL or Path("cofi.db").exists()


def database_url(ns: argparse.Namespace) -> str:
    """`DATABASE_URL` as the tracker reads it (DatabaseSettings: unset, SQLite ./cofi.db);
    the embedded file must already exist: reading it must not create an empty one."""
    if not database_configured(ns):
        raise CliError(
            "DATABASE_URL is unset and there is no ./cofi.db (the tracker's embedded "
            "database); set DATABASE_URL to the tracker's database",
            code=Exit.USAGE,
        )
    return checked_database_url(settings(DatabaseSettings, ns).resolved_database_url)


def checked_database_url(url: str) -> str:
    """`url` if SQLAlchemy's asyncio engine can use it; else one line saying what to write.
    The message names the driver, never the URL (it may hold a password)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CliError(
            "DATABASE_URL is not a database URL: write mysql+asyncmy://USER@HOST:PORT/DATABASE "
            "(MariaDB) or sqlite+aiosqlite:///PATH (see docs/configuration.md)",
            code=Exit.USAGE,
        ) from None
    try:
        is_async = bool(getattr(parsed.get_dialect(), "is_async", False))
    except NoSuchModuleError:
        is_async = False
    if not is_async:
        instead = ASYNC_URLS.get(parsed.get_backend_name(), ANY_ASYNC_URL)
        raise CliError(
            f"DATABASE_URL's driver {parsed.drivername!r} cannot be used: cofi talks to the "
            f"database through asyncio; write {instead} (see docs/configuration.md)",
            code=Exit.USAGE,
        )
    return url


def engine(ns: argparse.Namespace) -> "AsyncEngine":
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(database_url(ns))


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
        return number

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def non_empty(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout, for scripts"
    )


def call_length_options(p: argparse.ArgumentParser) -> None:
    from cli.audio import DEFAULT_MEDIAN_S, DEFAULT_SIGMA, MAX_CALL_S

    p.add_argument(
        "--median-s",
        type=positive(float),
        default=DEFAULT_MEDIAN_S,
        help="synthetic calls: median length in seconds (%(default)s)",
    )
    p.add_argument(
        "--sigma",
        type=float,
        default=DEFAULT_SIGMA,
        help="synthetic calls: lognormal spread, 0 = every call the median (%(default)s)",
    )
    p.add_argument(
        "--max-s",
        type=positive(float),
        default=MAX_CALL_S,
        help="synthetic calls: longest length in seconds (%(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="synthetic calls: seed of the lengths (%(default)s)"
    )


def lengths(ns: argparse.Namespace) -> "CallLengths":
    from cli.audio import CallLengths

    try:
        return CallLengths(median_s=ns.median_s, sigma=ns.sigma, cap_s=ns.max_s, seed=ns.seed)
    except ValueError as exc:
        raise CliError(str(exc), code=Exit.USAGE) from exc
