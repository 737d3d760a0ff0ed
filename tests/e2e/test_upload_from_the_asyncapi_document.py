"""An upload system written from docs/asyncapi.yaml alone: a bare aiokafka producer sends plain
JSON with only the fields the document marks required, under the keys it names, and the batch
completes. No shared/ model builds these messages (issue 20: a `kcat` upload that followed
the old document had every file dead-lettered)."""

import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from cli.audio import make_batch
from tests.pipeline_harness import running_pipeline

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
FILES = 20


def _required_only(doc: dict[str, Any], message: str, values: dict[str, Any]) -> dict[str, Any]:
    """The message with exactly the fields its schema requires: `type` from its const, the
    rest from `values`; checked against the document's schema before it is sent."""
    schema = doc["components"]["schemas"][message]
    body = {
        name: schema["properties"][name]["const"] if name == "type" else values[name]
        for name in schema["required"]
    }
    full = {**schema, "components": doc["components"]}
    jsonschema.Draft202012Validator(full).validate(body)
    return body


async def test_a_batch_sent_as_the_document_says_completes(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    doc = yaml.safe_load(DOCUMENT.read_text())
    uploads = doc["channels"]["uploads"]
    topic = uploads["address"].replace("{prefix}", topic_prefix)
    sent_by_uploader = {
        ref["$ref"].rsplit("/", 1)[-1]
        for op in doc["operations"].values()
        if op["action"] == "send"
        and op["channel"]["$ref"] == "#/channels/uploads"
        and op["summary"].startswith("upload system")
        for ref in op["messages"]
    }
    assert sent_by_uploader == {"FileUploaded", "BatchClosed"}
    messages = doc["components"]["messages"]
    for name in sent_by_uploader:  # both keyed by the batch id, per the document
        assert messages[name]["bindings"]["kafka"]["key"]["description"].startswith("the batch id")

    batch = f"asyncapi-{uuid.uuid4().hex[:8]}"
    paths = make_batch(tmp_path / "audio", FILES)
    files = [
        _required_only(
            doc, "FileUploaded", {"batch_id": batch, "file_name": p.name, "audio_uri": p.as_uri()}
        )
        for p in paths
    ]
    assert set(files[0]) == {"type", "batch_id", "file_name", "audio_uri"}
    closed = _required_only(doc, "BatchClosed", {"batch_id": batch, "file_count": FILES})

    async with running_pipeline(
        topic_prefix, mariadb_url, tmp_path / "logs", kafka_bootstrap
    ) as pipeline:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for body in files:  # the ordering rule: every file before BatchClosed, same key
                await producer.send_and_wait(topic, json.dumps(body).encode(), key=batch.encode())
            await producer.send_and_wait(topic, json.dumps(closed).encode(), key=batch.encode())
        finally:
            await producer.stop()
        summary = await pipeline.wait_finished(batch, timeout_s=240)
        async with pipeline.engine.connect() as conn:
            dead = (
                await conn.execute(
                    text("SELECT COUNT(*) FROM deadLetters WHERE sourceTopic = :t"), {"t": topic}
                )
            ).scalar_one()

    assert summary.total_files == FILES
    assert summary.finished and summary.status == "Complete"
    assert sum(summary.terminal.values()) == FILES and not summary.terminal.get("failed")
    assert dead == 0
