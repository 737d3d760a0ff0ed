"""faust's producer, made idempotent: faust turns idempotence on only inside transactions.

The routing events do not go through it any more (the agents publish through
`shared.runtime.publisher.Publisher`, whose producer is idempotent too and is replaced when it
breaks for good); whatever faust itself produces keeps the same guarantee, so a retry after a
lost acknowledgement duplicates nothing (docs: ARCHITECTURE.md, "Delivery semantics").
"""

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import faust
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport import consumer as faust_consumer
from faust.transport.drivers.aiokafka import Producer
from faust.utils import terminal

from shared.kafka_connection import KafkaConnection


class IdempotentProducer(Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class DistributorApp(faust.App):
    def _new_producer(self) -> Any:
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)


def faust_options(kafka: KafkaConnection) -> dict[str, Any]:
    """`broker` and `broker_credentials` of the app: the same cluster and security as aiokafka's."""
    options: dict[str, Any] = {
        "broker": ";".join(f"kafka://{s}" for s in kafka.bootstrap_servers.split(","))
    }
    if kafka.uses_sasl:
        assert kafka.sasl_password is not None  # checked by KafkaConnection's validator
        options["broker_credentials"] = SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            ssl_context=kafka.ssl_context(),
            mechanism=kafka.sasl_mechanism,
        )
    elif kafka.uses_tls:
        options["broker_credentials"] = SSLCredentials(kafka.ssl_context())
    return options


class _TableWhenPrinted:
    """faust's commit log table, formatted only if a handler prints it."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args, self.kwargs = args, kwargs

    def __str__(self) -> str:
        return str(terminal.logtable(*self.args, **self.kwargs))


def _logtable_when_printed(*args: Any, **kwargs: Any) -> _TableWhenPrinted:
    return _TableWhenPrinted(args, kwargs)


def skip_unprinted_commit_tables() -> None:
    """faust's consumer formats a table of the offsets on every commit for a "dev" log line
    no handler prints (bench/FINDINGS.md, issue 21); make it format on demand instead."""
    faust_consumer.terminal = SimpleNamespace(  # type: ignore[attr-defined,assignment]
        logtable=_logtable_when_printed
    )
