"""The distributor process refuses uploads whose `audio_uri` is outside its allowlist.

Refused files end on `cofi.failed` with the reason and never reach a GPU host's topic; the
allowed one is routed as usual.
"""

import asyncio
from pathlib import Path

from cli.processes import ProcessGroup, service_argv
from shared.events import FileFailed, FileStageCompleted, FileUploaded, any_event, encode
from shared.kafka import make_producer
from shared.provisioning import create_pipeline_topics
from shared.settings import CommonSettings
from tests.kafka_helpers import read_topic

HOST = "127.0.0.2"
URIS = {
    "ok.wav": "file:///data/audio/b/ok.wav",
    "metadata.wav": "http://169.254.169.254/latest/meta-data",
    "shadow.wav": "file:///etc/shadow",
    "climb.wav": "file:///data/audio/../../etc/passwd",
}


async def test_the_distributor_dead_letters_uris_outside_its_allowlist(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    settings = CommonSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        gpu_hosts=HOST,
    )
    await create_pipeline_topics(settings)
    topics = settings.topics
    producer = make_producer(kafka_bootstrap, "test")
    await producer.start()
    try:
        for name, uri in URIS.items():
            upload = FileUploaded(batch_id="b", file_name=name, audio_uri=uri)
            await producer.send_and_wait(topics.uploads, encode(upload), key=b"b")
    finally:
        await producer.stop()

    group = ProcessGroup(
        log_dir=tmp_path,
        env={
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TOPIC_PREFIX": topic_prefix,
            "GPU_HOSTS": HOST,
            "AUDIO_URI_ALLOWED_SCHEMES": "file",
            "AUDIO_URI_ALLOWED_ROOTS": "/data/audio",
            "F_DATADIR": str(tmp_path / "distributor-data"),
        },
    )
    try:
        group.start("distributor", service_argv("distributor"))
        failed = await read_topic(
            kafka_bootstrap, [topics.failed], lambda rs: len(rs) >= 3, timeout_s=120
        )
        routed = await read_topic(
            kafka_bootstrap, [topics.gpu("denoise", HOST)], lambda rs: len(rs) >= 1, timeout_s=60
        )
    finally:
        await asyncio.to_thread(group.stop_all)

    failures: dict[str, FileFailed] = {}
    for record in failed:
        failure = any_event.validate_json(record.value)
        assert isinstance(failure, FileFailed), failure
        failures[failure.file_name] = failure
    assert set(failures) == {"metadata.wav", "shadow.wav", "climb.wav"}
    for failure in failures.values():
        assert (failure.error_kind, failure.host) == ("permanent", None)
        assert failure.error.startswith("not distributed: audio_uri")
    assert "scheme 'http' is not allowed" in failures["metadata.wav"].error
    assert "outside AUDIO_URI_ALLOWED_ROOTS" in failures["shadow.wav"].error
    assert "'..'" in failures["climb.wav"].error
    [ok] = [any_event.validate_json(r.value) for r in routed]
    assert isinstance(ok, FileStageCompleted) and ok.file_name == "ok.wav"
