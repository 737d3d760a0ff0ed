"""The distributor's producers: faust's own is idempotent (faust enables it only in
transactions), and the routing events wait for the broker's ack before faust may commit."""

import asyncio
import json

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

from services.distributor.app import create_app, route_one
from services.distributor.reporting import RoutingReport
from services.distributor.routing import Incoming
from services.distributor.settings import DistributorSettings
from shared.events import FileUploaded
from shared.output import Output
from shared.runtime.publisher import Publisher
from tests.unit.fake_kafka import FakeProducer

pytestmark = pytest.mark.unit


async def test_fausts_own_producer_is_idempotent_not_transactional() -> None:
    app = create_app(DistributorSettings(topic_prefix="p"))
    # The aiokafka producer faust would start (faust's Producer has it, its protocol not).
    producer = app.producer._new_producer()  # type: ignore[attr-defined]
    try:
        # aiokafka keeps a transaction manager exactly when idempotence is on (acks=all).
        assert producer._txn_manager is not None
        assert producer._txn_manager.transactional_id is None
    finally:
        await producer.stop()


async def test_a_routed_message_returns_only_once_its_outputs_are_acknowledged() -> None:
    """Issue 19, item 1: a delivery failing for good used to be committed past. Now the agent
    does not return (so faust does not acknowledge the upload) until a producer, replaced
    here, has the broker's ack."""
    settings = DistributorSettings(topic_prefix="p")
    first = FakeProducer("first")
    first.broken = OutOfOrderSequenceNumber("sequence lost")
    replacement_may_start = asyncio.Event()
    made: list[FakeProducer] = []

    class Held(FakeProducer):
        async def start(self) -> None:
            await replacement_may_start.wait()
            await super().start()

    def new_producer() -> FakeProducer:
        made.append(Held("second"))
        return made[-1]

    publisher = Publisher(
        new_producer, service="distributor", dead_letter_topic="p.failed", producer=first
    )
    upload = FileUploaded(batch_id="b", file_name="a.wav", audio_uri="file:///a.wav")
    incoming = Incoming("p.uploads", 0, 3, b"b", b"{}")
    report = RoutingReport("distribute", settings.topics, [], None)
    routing = asyncio.create_task(
        route_one(
            incoming, "distribute", lambda _: [Output("p.x", b"b", upload)], publisher, report
        )
    )
    await asyncio.sleep(0.2)
    assert not routing.done(), "returned before any producer acknowledged the output"
    assert publisher.problem() is not None
    replacement_may_start.set()
    await asyncio.wait_for(routing, timeout=10)
    assert [json.loads(s.value or b"")["file_name"] for s in made[0].sent] == ["a.wav"]
    assert publisher.problem() is None


def test_faust_formats_its_commit_table_only_when_printed() -> None:
    from faust.transport import consumer as faust_consumer
    from faust.utils import terminal

    from services.distributor.producer import skip_unprinted_commit_tables

    before = faust_consumer.__dict__["terminal"]
    try:
        skip_unprinted_commit_tables()
        table = faust_consumer.__dict__["terminal"].logtable(
            [("tp", "1")], title="Commit Offsets", headers=["TP", "Offset"]
        )
        assert not isinstance(table, str)  # nothing formatted yet
        assert str(table) == terminal.logtable(
            [("tp", "1")], title="Commit Offsets", headers=["TP", "Offset"]
        )
    finally:
        faust_consumer.__dict__["terminal"] = before
