"""A batch over the SASL_SSL listener of `infra/kafka.sh start --sasl-ssl`: every service and
the CLI authenticate with SCRAM-SHA-512 over TLS (the broker's CA generated at its start), and
a client with a wrong password is refused.

The broker is a private one (its own ports and cache folder): the shared broker stays PLAINTEXT.
"""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr
from sqlalchemy import text

from cli.audio import make_batch
from cli.upload import submit
from shared.kafka import make_producer
from shared.kafka_connection import KafkaConnection
from tests.crash.infra import CACHE, PrivateKafka
from tests.pipeline_harness import running_pipeline

FILES = 40
# Its own addresses and ports: a demo or another e2e run on this machine does not collide.
# The broker's and the simulator's ports sit below Linux's ephemeral range (32768-60999): a
# port there can be held at any moment by some client's outgoing connection, and a bind fails.
HOSTS = "127.0.2.2:4,127.0.2.3:4"
PORTS = {"DENOISE_PORT": "26010", "IVR_PORT": "26011", "LID_PORT": "26012", "STT_PORT": "26013"}
LLM_PORT = 26000
CONTROL_PORT = 26099


@pytest.fixture(scope="module")
def sasl_kafka() -> Iterator[PrivateKafka]:
    kafka = PrivateKafka(
        cache=CACHE / "e2e-sasl-kafka", port=26292, controller_port=26293, sasl_ssl_port=26294
    )
    kafka.start(fresh=True)
    try:
        yield kafka
    finally:
        kafka.stop()


async def test_a_batch_runs_over_sasl_ssl_with_scram_sha_512(
    sasl_kafka: PrivateKafka, mariadb_url: str, tmp_path: Path
) -> None:
    env = sasl_kafka.sasl_env("SCRAM-SHA-512")
    batch = f"sasl-{uuid.uuid4().hex[:8]}"
    paths = make_batch(tmp_path / "audio", FILES, corrupt=0, short=0)
    async with running_pipeline(
        f"s{uuid.uuid4().hex[:11]}",
        mariadb_url,
        tmp_path / "logs",
        env["KAFKA_BOOTSTRAP_SERVERS"],
        gpu_hosts=HOSTS,
        extra_env={**PORTS, **env},
        llm_port=LLM_PORT,
        control_port=CONTROL_PORT,
    ) as pipeline:
        settings = pipeline.config.settings()  # the services' settings: SASL_SSL, SCRAM
        assert settings.kafka.security_protocol == "SASL_SSL"
        assert settings.kafka.sasl_mechanism == "SCRAM-SHA-512"
        await submit(settings.kafka, settings.topics, batch, paths)
        summary = await pipeline.wait_finished(batch, timeout_s=240)
        async with pipeline.engine.connect() as conn:
            states: dict[str, int] = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT terminalState, COUNT(*) FROM fileDistribution "
                            "WHERE batchId = :b GROUP BY terminalState"
                        ),
                        {"b": batch},
                    )
                ).all()
            )
            status = (
                await conn.execute(
                    text("SELECT status FROM batchStatus WHERE batchId = :b"), {"b": batch}
                )
            ).scalar_one()
    assert summary.total_files == FILES
    assert sum(states.values()) == FILES
    assert set(states) <= {"done", "skipped"}, states
    assert status == "Complete"


async def test_a_client_with_a_wrong_password_is_refused(
    sasl_kafka: PrivateKafka, caplog: pytest.LogCaptureFixture
) -> None:
    env = sasl_kafka.sasl_env("SCRAM-SHA-512")

    def connection(password: str) -> KafkaConnection:
        return KafkaConnection(
            bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=env["KAFKA_SASL_USERNAME"],
            sasl_password=SecretStr(password),
            ssl_cafile=env["KAFKA_SSL_CAFILE"],
        )

    refused = make_producer(connection("not-the-password"), "wrong-password")
    with pytest.raises(KafkaConnectionError):
        await refused.start()
    await refused.stop()
    assert "SaslAuthenticationFailed" in caplog.text  # refused by the broker, not unreachable

    accepted = make_producer(connection(env["KAFKA_SASL_PASSWORD"]), "right-password")
    await accepted.start()
    await accepted.stop()
