"""The distributor awaits the broker's answer for what it routes (issue 19, found item 1).

The GPU host's denoise topic takes no record over 200 bytes, so every routed event is refused
by the broker when it is delivered. Before, the agent never read the delivery: the upload was
committed past and the file vanished. Now the refusal dead-letters the upload with its raw
bytes and the reason, and only then is it committed.
"""

import asyncio
import base64
from pathlib import Path

from cli.processes import ProcessGroup, service_argv
from shared.events import DeadLetter, FileUploaded, any_event, encode
from shared.kafka import ensure_topics, make_producer
from shared.provisioning import create_pipeline_topics
from shared.settings import CommonSettings
from shared.topic_plan import TopicSpec
from tests.kafka_helpers import read_topic

HOST = "127.0.0.2"


async def test_a_routed_event_the_broker_refuses_dead_letters_its_upload(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    settings = CommonSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        gpu_hosts=HOST,
    )
    topics = settings.topics
    denoise = topics.gpu("denoise", HOST)
    await ensure_topics(kafka_bootstrap, [TopicSpec(denoise, 1, 1, {"max.message.bytes": "200"})])
    await create_pipeline_topics(settings)
    upload = FileUploaded(batch_id="b", file_name="a.wav", audio_uri="file:///data/a.wav")
    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    try:
        await producer.send_and_wait(topics.uploads, encode(upload), key=b"b")
    finally:
        await producer.stop()

    group = ProcessGroup(
        log_dir=tmp_path,
        env={
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TOPIC_PREFIX": topic_prefix,
            "GPU_HOSTS": HOST,
            "F_DATADIR": str(tmp_path / "distributor-data"),
        },
    )
    try:
        group.start("distributor", service_argv("distributor"))
        failed = await read_topic(
            kafka_bootstrap, [topics.failed], lambda rs: len(rs) >= 1, timeout_s=120
        )
    finally:
        await asyncio.to_thread(group.stop_all)

    [letter] = [any_event.validate_json(r.value) for r in failed]
    assert isinstance(letter, DeadLetter)
    assert letter.source_topic == topics.uploads and letter.offset == 0
    assert base64.b64decode(letter.value_b64) == encode(upload)
    assert letter.error.startswith("publish refused: MessageSizeTooLargeError"), letter.error
