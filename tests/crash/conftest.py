"""Fixtures of the crash suite: batch size, audio, and the broker and MariaDB it may break.

`CRASH_FILES` (default 1,000), `CRASH_DB_OUTAGE_S` (default 20; `make chaos` uses 60),
`CRASH_HOST_OUTAGE_S` (20; chaos 90) and `CRASH_LLM_OUTAGE_S` (15; chaos 60) size the
scenarios under `make test`.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crash.audio import make_audio
from tests.crash.harness import ChaosSettings
from tests.crash.infra import CACHE, PrivateCluster, PrivateKafka, PrivateMariaDB
from tests.crash.lifecycle import Infra
from tests.crash.scenario import Breakables


@pytest.fixture(scope="session")
def crash_settings() -> ChaosSettings:
    return ChaosSettings(
        files=int(os.environ.get("CRASH_FILES", "1000")),
        db_outage_s=float(os.environ.get("CRASH_DB_OUTAGE_S", "20")),
        host_outage_s=float(os.environ.get("CRASH_HOST_OUTAGE_S", "20")),
        llm_outage_s=float(os.environ.get("CRASH_LLM_OUTAGE_S", "15")),
        finish_timeout_s=float(os.environ.get("CRASH_FINISH_TIMEOUT_S", "300")),
    )


@pytest.fixture(scope="session")
def crash_audio(crash_settings: ChaosSettings) -> list[Path]:
    corrupt = int(crash_settings.files * crash_settings.corrupt_share)
    short = int(crash_settings.files * crash_settings.short_share)
    folder = CACHE / "crash-audio" / f"{crash_settings.files}-{corrupt}-{short}"
    return make_audio(folder, crash_settings.files, corrupt, short)


@pytest.fixture(scope="session")
def private_kafka() -> Iterator[PrivateKafka]:
    kafka = PrivateKafka()
    kafka.start(fresh=True)
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def private_cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    cluster.start(fresh=True)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def private_mariadb() -> Iterator[PrivateMariaDB]:
    mariadb = PrivateMariaDB()
    mariadb.start()
    try:
        yield mariadb
    finally:
        mariadb.stop()


@pytest.fixture
def breakables(kafka_bootstrap: str, mariadb_server_url: str) -> Breakables:
    return Breakables(Infra(kafka_bootstrap, mariadb_server_url))
