"""Fixtures for real infrastructure: the Kafka broker and MariaDB started by `make infra`.

Every test gets its own topic prefix (so its own topics and consumer groups) and its own
database, so tests never see each other's data.
"""

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from tests.database_helpers import fresh_database

# The local broker is one node (infra/kafka.sh); the settings' defaults suit three.
os.environ.setdefault("TOPIC_REPLICATION_FACTOR", "1")
os.environ.setdefault("TOPIC_MIN_INSYNC_REPLICAS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test's folder is its marker, so `-m unit` and friends select by layer.
    for item in items:
        for layer in ("unit", "integration", "e2e", "crash", "gameday"):
            if f"tests/{layer}/" in str(item.fspath).replace(os.sep, "/"):
                item.add_marker(getattr(pytest.mark, layer))
    # Last: `make test` builds the compose stack's images in the background meanwhile.
    items.sort(key=lambda item: item.get_closest_marker("compose") is not None)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


@pytest.fixture
def topic_prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic prefix; the test's topics are deleted afterwards.

    Left behind, thousands of test topics slow every later broker start and grow its heap.
    """
    prefix = f"t{uuid.uuid4().hex[:12]}"
    yield prefix
    # Its own thread and loop: the test's event loop may be closed or not ours to use.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _delete_topics(kafka_bootstrap, prefix)).result()


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        await admin.start()
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine, timeout_ms=30_000)
    except KafkaError as exc:  # an untidy broker is not a failed test
        logging.getLogger(__name__).warning("could not delete topics of %s: %s", prefix, exc)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def mariadb_server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", "mysql+asyncmy://cofi:cofi@127.0.0.1:3306/cofi")


@pytest.fixture
async def mariadb_url(mariadb_server_url: str) -> AsyncIterator[str]:
    """URL of a fresh, empty MariaDB database, dropped after the test."""
    async with fresh_database(mariadb_server_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("db") / "cofi.db"
    yield f"sqlite+aiosqlite:///{path}"
