"""The distributor's upload ledger rebuilt from the real uploads topic after a "restart"."""

from bench.assignment_balance import fleet, route_all, uploads
from cli.audio import CallLengths
from services.distributor.assignment import UploadLedger
from services.distributor.ledger_replay import replay_partition
from services.distributor.routing import Incoming, observe_upload
from shared.kafka import ensure_topics, make_producer
from shared.topics import Topics


async def test_a_replayed_partition_places_the_next_uploads_as_the_first_run_did(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    hosts = fleet(4)
    topic = Topics(topic_prefix).uploads
    await ensure_topics(kafka_bootstrap, [topic], partitions=1)
    lengths = CallLengths(sigma=1.5, seed=5).draw(600)
    records = uploads("b1", lengths)
    producer = make_producer(kafka_bootstrap, "test-ledger")
    await producer.start()
    try:
        for record in records:
            await producer.send(topic, record.value, key=record.key)
        await producer.flush()
    finally:
        await producer.stop()
    first_run = route_all(records, hosts, UploadLedger())

    restarted = UploadLedger()
    crash_at = 450
    replayed = await replay_partition(
        kafka_bootstrap,
        topic,
        0,
        restarted.next_offset(0),
        crash_at,
        lambda m: observe_upload(m, hosts, restarted),
        lambda first: restarted.start(0, first),
    )
    assert replayed == crash_at
    assert not restarted.needs_replay(0, crash_at)
    after = [Incoming(topic, 0, r.offset, r.key, r.value) for r in records[crash_at:]]
    assert route_all(after, hosts, restarted) == first_run[crash_at:]
