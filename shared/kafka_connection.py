"""How every Kafka client reaches the cluster: servers, SASL and TLS, from the settings.

One value object feeds aiokafka (producers, consumers, admin) and faust
(`services/distributor/producer.py`) alike, so a cluster
that needs SASL_SSL is configured once (docs/operations.md, "Running on your Kafka cluster").
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaConnection(BaseModel):
    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # A CA bundle to trust (unset: the system's); a client certificate for mutual TLS.
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    # Not how to reach the cluster but how often to ask it: every consumer made from this
    # connection, so that the setting reaches them all without another argument.
    consumer_metadata_max_age_ms: int = 30_000

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaConnection:
        if self.uses_sasl and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        context.check_hostname = self.ssl_check_hostname
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            assert self.sasl_password is not None  # checked by the validator
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        return options


def connection(kafka: KafkaConnection | str) -> KafkaConnection:
    """Tests and tools may pass a bare `host:port`: a PLAINTEXT connection."""
    return kafka if isinstance(kafka, KafkaConnection) else KafkaConnection(bootstrap_servers=kafka)
