"""Kafka settings: topic plan, drift, and the security options every client gets."""

import ssl

import pytest
from pydantic import ValidationError

from services.distributor.producer import faust_options
from shared.kafka import make_consumer, make_topic_reader
from shared.kafka_connection import KafkaConnection
from shared.settings import CommonSettings
from shared.topic_plan import TopicSpec, TopicState, drift, retention_ms

pytestmark = pytest.mark.unit


def test_defaults_suit_a_three_broker_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOPIC_REPLICATION_FACTOR", raising=False)
    monkeypatch.delenv("TOPIC_MIN_INSYNC_REPLICAS", raising=False)
    settings = CommonSettings(topic_prefix="p", gpu_hosts="h1:4")
    plan = {spec.name: spec for spec in settings.topic_plan()}
    assert {spec.replication_factor for spec in plan.values()} == {3}
    assert plan["p.uploads"].configs["min.insync.replicas"] == "2"
    assert plan["p.control"].configs["cleanup.policy"] == "compact"
    assert plan["p.control"].configs["retention.ms"] == "-1"
    assert plan["p.failed"].configs["retention.ms"] == retention_ms(720)
    assert plan["p.denoise.h1"].configs["retention.ms"] == retention_ms(336)
    assert plan["p.denoise.h1"].configs["cleanup.policy"] == "delete"


def test_min_isr_above_replication_is_refused() -> None:
    with pytest.raises(ValidationError, match="TOPIC_MIN_INSYNC_REPLICAS=3 exceeds"):
        CommonSettings(topic_replication_factor=2, topic_min_insync_replicas=3)


def test_drift_names_every_difference() -> None:
    wanted = TopicSpec("t", 4, 3, {"min.insync.replicas": "2", "retention.ms": "100"})
    actual = TopicState("t", 2, 1, {"min.insync.replicas": "1", "retention.ms": "100"})
    assert drift(wanted, actual) == [
        "t: 2 partitions, plan says 4",
        "t: replication factor 1, plan says 3",
        "t: min.insync.replicas=1, plan says 2",
    ]
    assert drift(wanted, TopicState("t", 4, 3, dict(wanted.configs))) == []


def test_plaintext_by_default() -> None:
    options = CommonSettings().kafka.client_options()
    assert options["security_protocol"] == "PLAINTEXT"
    assert "sasl_plain_password" not in options
    assert "ssl_context" not in options


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_reaches_aiokafka_and_faust(mechanism: str) -> None:
    settings = CommonSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="cofi",
        kafka_sasl_password="s3cret",
    )
    assert "s3cret" not in repr(settings)  # a SecretStr, never printed
    options = settings.kafka.client_options()
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_password"] == "s3cret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = faust_options(settings.kafka)["broker_credentials"]
    assert credentials.mechanism.value == mechanism
    assert credentials.protocol.value == "SASL_SSL"


def test_sasl_without_credentials_fails_at_start() -> None:
    with pytest.raises(ValidationError, match="needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        CommonSettings(kafka_security_protocol="SASL_PLAINTEXT")


def test_faust_gets_every_bootstrap_server() -> None:
    kafka = KafkaConnection(bootstrap_servers="a:1,b:2")
    assert faust_options(kafka) == {"broker": "kafka://a:1;kafka://b:2"}


async def test_the_consumers_poll_settings_reach_the_clients() -> None:
    settings = CommonSettings(
        kafka_consumer_metadata_max_age_ms=30_000, control_fetch_wait_ms=5_000
    )
    consumer = make_consumer(settings.kafka, "g", "c")
    reader = make_topic_reader(settings.kafka, "t", settings.control_fetch_wait_ms)
    try:
        # aiokafka keeps them privately: what its metadata task and its fetcher read.
        assert consumer._client._metadata_max_age_ms == 30_000
        assert reader._client._metadata_max_age_ms == 30_000
        assert reader._fetch_max_wait_ms == 5_000
    finally:
        await consumer.stop()
        await reader.stop()
