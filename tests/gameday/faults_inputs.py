"""Faults that come in as records and commands: hostile uploads, poison and duplicated
events, a schema the services do not know, drains, a cancel key shaped like a drain key,
a second submit to a finished batch, a topic that refuses the producer's batches."""

import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import TopicPartition

from cli.dead_letters import cancellation, drain, publish
from cli.upload import submit
from shared.events import BatchClosed, FileUploaded, encode
from shared.kafka import make_producer
from tests.crash.scenarios_inputs import POISON
from tests.gameday.day import Batch, Day

Ctx = dict[str, Any]
UNKNOWN_HOST = "10.255.0.9"
KEY_70K = 70 * 1024
LONG_NAME = 2000  # characters: past any VARCHAR(255) a dead letter's file name might sit in


async def _send(day: Day, records: Sequence[tuple[str, bytes | None, bytes]], what: str) -> None:
    """Raw records (topic, key, value), each remembered as injected on purpose."""
    producer = make_producer(day.config.bootstrap, "gameday-hostile")
    await producer.start()
    try:
        for topic, key, value in records:
            meta = await producer.send_and_wait(topic, value, key=key)
            day.injected[(topic, meta.partition, meta.offset)] = what
    finally:
        await producer.stop()


def _upload(batch_id: str, name: str, uri: str, duration: Any = None) -> bytes:
    event = FileUploaded(batch_id=batch_id, file_name=name, audio_uri=uri).model_dump(mode="json")
    if duration is not None:
        event["duration_s"] = duration
    return json.dumps(event).encode()


# A hostile upload: (audio URI, duration_s as sent or None, what its failure must name).
Hostile = tuple[str, Any, str]


async def _hostile_batch(day: Day, ctx: Ctx, tag: str, hostile: dict[str, Hostile]) -> None:
    """A batch of three ordinary calls plus `hostile` uploads, closed with the count of both:
    each hostile file must end failed, naming its reason; the batch must complete."""
    n = sum(1 for b in day.batches.values() if b.plan == "hostile") + 1
    batch_id = f"gd{day.seed}-h{n:02d}-{tag}"
    normal = ctx["rng"].sample(day.audio[20:], 3)
    batch = Batch(batch_id, [p.name for p in normal] + list(hostile), day.now(), "hostile")
    batch.expected_failures = {name: reason for name, (_, _, reason) in hostile.items()}
    day.batches[batch_id] = batch
    uploads = [_upload(batch_id, p.name, p.resolve().as_uri()) for p in normal]
    uploads += [_upload(batch_id, name, uri, d) for name, (uri, d, _) in hostile.items()]
    closed = BatchClosed(batch_id=batch_id, file_count=len(batch.files))
    key = batch_id.encode()
    records = [(day.run.topics.uploads, key, raw) for raw in [*uploads, encode(closed)]]
    day.step("workload", f"submit {batch_id} ({len(batch.files)} files, hostile)")
    await _send(day, records, f"hostile batch {batch_id}")
    ctx["detail"] = f"batch {batch_id}: 3 calls and " + ", ".join(n[:40] for n in hostile)


async def bad_uris(day: Day, ctx: Ctx) -> None:
    missing = "file:///nonexistent/gameday/missing.wav"
    await _hostile_batch(
        day,
        ctx,
        "uri",
        {
            "missing_file.wav": (missing, None, "not found"),
            "bad_scheme.wav": ("gopher://x/y.wav", None, "uri"),
            "not_a_uri.wav": ("::not a uri::", None, "uri"),
        },
    )


async def huge_numbers(day: Day, ctx: Ctx) -> None:
    uri = day.audio[30].resolve().as_uri()
    await _hostile_batch(
        day,
        ctx,
        "num",
        {
            "duration_1e300.wav": (uri, 1e300, "duration"),
            "duration_400_digits.wav": (uri, 10**400, "duration"),
        },
    )


async def key_70k_not_json(day: Day, ctx: Ctx) -> None:
    """A record whose key is 70 KiB and whose value is not JSON: a dead letter keeps both
    whole, nothing cut."""
    key = os.urandom(KEY_70K // 2).hex().encode()
    await _send(day, [(day.run.topics.uploads, key, b"this is { not json")], "70 KiB key")
    ctx["detail"] = f"a {len(key)}-byte key with a value that is not JSON on uploads"


async def long_name_upload(day: Day, ctx: Ctx) -> None:
    name = "n" * (LONG_NAME - 4) + ".wav"
    missing = "file:///nonexistent/gameday/" + name
    await _hostile_batch(day, ctx, "name", {name: (missing, None, "not found")})


async def poison(day: Day, ctx: Ctx) -> None:
    topics = day.run.topics.all_topics(day.config.settings().host_ips)
    records = [
        (t, f"poison-{i}".encode(), raw.replace(b"%s", b"gameday"))
        for t in topics
        for i, raw in enumerate(POISON)
    ]
    await _send(day, records, "poison")
    ctx["detail"] = f"{len(records)} poison messages on {len(topics)} topics"


async def _recent(day: Day, per_partition: int) -> list[Any]:
    """The last records of every stage topic (the copies a redelivery would make)."""
    topics = [
        t
        for t in day.run.topics.all_topics(day.config.settings().host_ips)
        if t not in (day.run.topics.uploads, day.run.topics.failed, day.run.topics.control)
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=day.config.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(day.config.partitions)]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        wanted = {tp: end for tp, end in ends.items() if end > 0}
        for tp, end in wanted.items():
            consumer.seek(tp, max(0, end - per_partition))
        records: list[Any] = []
        loop = asyncio.get_running_loop()
        until = loop.time() + 20
        while wanted and loop.time() < until:
            for tp, rs in (await consumer.getmany(*wanted, timeout_ms=500)).items():
                records.extend(r for r in rs if r.offset < wanted[tp])
                if rs and rs[-1].offset + 1 >= wanted[tp]:
                    wanted.pop(tp, None)
        return records
    finally:
        await consumer.stop()


async def duplicates(day: Day, ctx: Ctx) -> None:
    records = [r for r in await _recent(day, 3) if r.value]
    copies = records[:: max(1, len(records) // 40)]
    producer = make_producer(day.config.bootstrap, "gameday-duplicates")
    await producer.start()
    try:
        for r in copies:
            await producer.send_and_wait(r.topic, r.value, key=r.key)
    finally:
        await producer.stop()
    ctx["detail"] = f"{len(copies)} copies of stage events already on their topics"


async def unknown_version(day: Day, ctx: Ctx) -> None:
    """Copies of known files' stage events with a schema version no service knows."""
    copies = []
    for r in (await _recent(day, 2))[:12]:
        try:
            event = json.loads(r.value or b"")
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("file_name"):
            event["v"] = 99
            copies.append((r.topic, r.key, json.dumps(event).encode()))
    await _send(day, copies, "schema v99")
    ctx["detail"] = f"{len(copies)} stage events of known files re-sent as schema version 99"


# -- drains and cancellations ----------------------------------------------------------------
def drain_fault(unknown: bool) -> tuple[Any, Any]:
    async def start(day: Day, ctx: Ctx) -> None:
        host = UNKNOWN_HOST if unknown else ctx["rng"].choice(day.hosts())
        ctx["host"] = host
        ctx["detail"] = f"cofi drain {host}"
        await publish(day.config.bootstrap, [drain(host, True, "game day", day.run.topics)])

    async def stop(day: Day, ctx: Ctx) -> None:
        undo = drain(ctx["host"], False, "game day: undo", day.run.topics)
        await publish(day.config.bootstrap, [undo])

    return start, stop


async def cancel_key_collision(day: Day, ctx: Ctx) -> None:
    """A batch whose id is a drain key (`host:<ip>`), cancelled, and a drain of that host:
    both live under one key of the compacted control topic."""
    host = "10.255.0.7"
    batch_id = f"host:{host}"
    paths = ctx["rng"].sample(day.audio[20:], 8)
    day.batches[batch_id] = Batch(batch_id, [p.name for p in paths], day.now(), "cancel")
    await submit(day.config.bootstrap, day.run.topics, batch_id, paths)
    outputs = [
        cancellation(batch_id, "game day: cancelled", day.run.topics),
        drain(host, True, "game day", day.run.topics),
    ]
    await publish(day.config.bootstrap, outputs)
    ctx["host"] = host
    ctx["detail"] = f"batch {batch_id} submitted and cancelled; cofi drain {host}"


async def resubmit_finished(day: Day, ctx: Ctx) -> None:
    """`cofi submit` of a finished batch's id with more files: it must be refused."""
    done = [b for b in day.batches.values() if b.finished_s is not None and b.plan == "plain"]
    if not done:
        ctx["detail"] = "no finished batch yet: nothing resubmitted"
        return
    batch = ctx["rng"].choice(done)
    folder = Path(tempfile.mkdtemp(prefix="gameday-resubmit-"))
    extra = ctx["rng"].sample(day.audio[20:], len(batch.files) + 2)
    for path in extra:
        shutil.copyfile(path, folder / path.name)
    env = {**os.environ, **day.config.env()}
    cofi = Path(sys.executable).parent / "cofi"
    proc = await asyncio.create_subprocess_exec(
        str(cofi),
        "submit",
        batch.batch_id,
        "--folder",
        str(folder),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    shutil.rmtree(folder, ignore_errors=True)
    refused = proc.returncode != 0
    ctx["refused"] = refused
    ctx["detail"] = (
        f"cofi submit {batch.batch_id} (finished, {len(batch.files)} files) with "
        f"{len(extra)} files: exit {proc.returncode}, "
        + ("refused" if refused else "ACCEPTED")
        + f" ({out.decode(errors='replace').strip()[-160:]})"
    )
    if not refused:
        day.notes.append(f"a submit to finished batch {batch.batch_id} was accepted")
        batch.files = sorted({*batch.files, *(p.name for p in extra)})


async def late_after_complete(day: Day, ctx: Ctx) -> None:
    done = [b for b in day.batches.values() if b.finished_s is not None and b.plan == "plain"]
    if not done:
        ctx["detail"] = "no finished batch yet: nothing uploaded late"
        return
    batch = ctx["rng"].choice(done)
    name = f"late_fault_{len(batch.late_files)}.wav"
    batch.late_files.append(name)
    raw = _upload(batch.batch_id, name, day.audio[25].resolve().as_uri())
    await _send(day, [(day.run.topics.uploads, batch.batch_id.encode(), raw)], "late upload")
    ctx["detail"] = f"upload {name} into {batch.batch_id}, which had finished"


# -- a topic that refuses the producer's batches -----------------------------------------------
# Under the services' producer batch (shared/kafka.py: 256 KiB), over any one event.
SMALL_MAX_MESSAGE_BYTES = "32768"


async def _topic_configs(day: Day, topic: str, update: dict[str, str] | None) -> dict[str, str]:
    """The topic's own (non-default) configs; with `update`, set those as its whole set
    (AlterConfigs replaces every config the topic had, so the others are sent again)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=day.config.bootstrap)
    await admin.start()
    try:
        own: dict[str, str] = {}
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        for response in await admin.describe_configs([resource]):
            for found in response.to_object()["resources"]:
                for entry in found["config_entries"]:
                    dynamic = entry.get("config_source", 5) == 1 or entry.get("is_default") is False
                    if dynamic and entry["config_value"] is not None:
                        own[entry["config_names"]] = entry["config_value"]
        if update is not None:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, update)])
        return own
    finally:
        await admin.close()


async def shrink_topic(day: Day, ctx: Ctx) -> None:
    topics = day.run.topics.all_topics(day.config.settings().host_ips)
    topic = ctx["rng"].choice([t for t in topics if t != day.run.topics.control])
    ctx["topic"] = topic
    ctx["detail"] = f"{topic}: max.message.bytes {SMALL_MAX_MESSAGE_BYTES}"
    own = await _topic_configs(day, topic, None)
    ctx["own"] = own
    await _topic_configs(day, topic, {**own, "max.message.bytes": SMALL_MAX_MESSAGE_BYTES})


async def restore_topic(day: Day, ctx: Ctx) -> None:
    await _topic_configs(day, ctx["topic"], ctx["own"])
