"""The tracker's database engine: MySQL/MariaDB (asyncmy) or the embedded SQLite (aiosqlite)."""

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def is_mysql(url: str) -> bool:
    return make_url(url).get_backend_name() in ("mysql", "mariadb")


def make_engine(url: str) -> AsyncEngine:
    if is_mysql(url):
        # READ COMMITTED: the counts read after taking the batches' row locks see every
        # commit of another tracker instance (REPEATABLE READ would show a stale snapshot).
        return create_async_engine(
            url, isolation_level="READ COMMITTED", pool_pre_ping=True, pool_recycle=1800
        )
    return create_async_engine(url, connect_args={"timeout": 30})
