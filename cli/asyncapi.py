"""Write docs/asyncapi.yaml, the AsyncAPI 3 contract of every topic, from the code.

    cofi contracts            # rewrite it (and the GPU model API's documents)
    cofi contracts --check    # exit 1 when a committed document differs from the code

Channels come from the pipeline's graph (`shared/pipeline.py`) and topic names
(`shared/topics.py`), payloads from the event models (`shared/events.py`, pydantic's JSON
schema), keys from `shared.events.file_key`; `tests/unit/test_contracts.py` fails when the
committed file drifts from what this renders.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cli.asyncapi_examples import example_object
from shared.events import (
    BatchCancelled,
    BatchClosed,
    DeadLetter,
    DeadLetterReplayed,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    HostDrained,
    cancel_key,
    drain_key,
    file_key,
)
from shared.pipeline import PIPELINE, TRIAGE, StageSpec, input_topic, previous
from shared.settings import CommonSettings, GpuHost
from shared.topic_plan import TopicSpec
from shared.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
PATH = ROOT / "docs" / "asyncapi.yaml"
SCHEMAS = "#/components/schemas/{model}"
TEMPLATE = Topics("{prefix}")
HOST = "{host}"

EVENTS: tuple[type[BaseModel], ...] = (
    FileUploaded,
    BatchClosed,
    FileReassigned,
    FileStageCompleted,
    FileFailed,
    DeadLetter,
    DeadLetterReplayed,
    BatchCancelled,
    HostDrained,
)
BATCH_KEY = "the batch id (UTF-8)"
HOST_KEY = (
    f"`{drain_key('{ip}').decode()}` (UTF-8): the latest word per GPU host survives compaction"
)
FILE_KEY = (
    f"`{file_key('{batch_id}', '{file_name}').decode()}` (UTF-8): a file's messages stay in order"
)
CANCEL_KEY = (
    f"`{cancel_key('{batch_id}').decode()}` (UTF-8; records of older releases: the bare batch id)"
)
UPLOAD_SYSTEM = "upload system"


@dataclass(frozen=True)
class Channel:
    """One topic: its address, what travels on it, who writes and who reads it."""

    id: str
    address: str
    description: str
    messages: tuple[str, ...]  # names in components.messages
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    per_host: bool = False
    # Producers that send only some of the channel's messages: actor -> those messages.
    sends: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _after(stage: str) -> str:
    return f"FileStageCompleted.{stage}"


def _stage_channel(row: StageSpec) -> Channel:
    before = previous(row.name)
    address = input_topic(row.name, TEMPLATE, HOST if row.per_host else None)
    if before is None:
        return Channel(
            id="uploads",
            address=address,
            description=(
                "The upload system announces a batch's files, then closes the batch. Key: "
                f"{BATCH_KEY}, so a batch's messages share one partition and are read in the "
                "order sent. Ordering rule: `BatchClosed` comes after every `FileUploaded` of "
                "its batch, with the same key; `file_count` is the number of distinct file "
                "names sent. A file sent twice is harmless (files are identified by batch "
                "and name). `audio_uri` must pass the distributor's allowlist "
                "(`AUDIO_URI_ALLOWED_SCHEMES`, `AUDIO_URI_ALLOWED_ROOTS`), else the file fails. "
                "Every message carries `type`, which the decoder reads first: a message "
                "without it is dead-lettered. `FileReassigned` is cofi's own: a GPU stage "
                "hands a file of a dead or drained host back to the distributor (key: "
                f"{BATCH_KEY}); the upload system never sends it."
            ),
            messages=("FileUploaded", "BatchClosed", "FileReassigned"),
            producers=(UPLOAD_SYSTEM, "gpu_stage"),
            consumers=(row.runner, "tracker"),
            sends=(
                (UPLOAD_SYSTEM, ("FileUploaded", "BatchClosed")),
                ("gpu_stage", ("FileReassigned",)),
            ),
        )
    where = " on the GPU host the distributor chose (`{host}`)" if row.per_host else ""
    route = " with `context.triage.route` = `stt`" if before.name == TRIAGE else ""
    return Channel(
        id=row.name,
        address=address,
        description=(
            f"Input of stage `{row.name}`{where}: the file-completed event of stage "
            f"`{before.name}`{route}, carrying every attempt and the file's context. "
            f"Key: {FILE_KEY}."
        ),
        messages=(_after(before.name),),
        producers=(before.runner,),
        consumers=(row.runner, "tracker"),
        per_host=row.per_host,
    )


def channels() -> list[Channel]:
    last = PIPELINE[-1]
    triage = next(row for row in PIPELINE if row.name == TRIAGE)
    return [
        *(_stage_channel(row) for row in PIPELINE),
        Channel(
            id="done",
            address=TEMPLATE.done,
            description=(
                f"Files that finished: stage `{last.name}`'s completed event, or stage "
                "`triage`'s with `context.triage.route` = `skip` (triaged out, with the "
                f"rule and reason). Key: {FILE_KEY}."
            ),
            messages=(_after(last.name), _after(triage.name)),
            producers=(last.runner, triage.runner),
            consumers=("tracker",),
        ),
        Channel(
            id="failed",
            address=TEMPLATE.failed,
            description=(
                "Dead letters. `FileFailed`: a stage gave up on a file (a permanent error, "
                "a spent retry budget, a dead GPU host, a refused `audio_uri`), with every "
                f"attempt and the input it had; key {FILE_KEY}. `DeadLetter`: a record no "
                "consumer could decode, with its raw bytes in base64 and its source "
                "topic/partition/offset; key: the source record's key (may be absent). "
                "`DeadLetterReplayed`: `cofi retry` sent a letter's raw bytes back (named by "
                "the letter's origin), or a `FileFailed`'s input (named by that record's own "
                "topic/partition/offset), written in that record's partition after it; the "
                "tracker stamps a letter's row `replayedAt` and a later `cofi retry` does not "
                "send either back again. "
                "`cofi retry` reads this topic from the beginning."
            ),
            messages=("FileFailed", "DeadLetter", "DeadLetterReplayed"),
            producers=("distributor", "gpu_stage", "llm_stage", "cofi retry"),
            consumers=("tracker", "cofi retry"),
            sends=(
                ("distributor", ("FileFailed", "DeadLetter")),
                ("gpu_stage", ("FileFailed", "DeadLetter")),
                ("llm_stage", ("FileFailed", "DeadLetter")),
                ("cofi retry", ("DeadLetterReplayed",)),
            ),
        ),
        Channel(
            id="control",
            address=TEMPLATE.control,
            description=(
                "Compacted: the latest control event per key. `BatchCancelled` (key: "
                f"{CANCEL_KEY}): stages stop starting work for the batch. `HostDrained` (key: "
                f"{HOST_KEY}): the host's GPU consumers hand its files back for another host, "
                "until a `HostDrained` with `drained` false. Every stage process reads the "
                "topic whole (no consumer group), to its end before it starts work."
            ),
            messages=("BatchCancelled", "HostDrained"),
            producers=("cofi cancel", "cofi drain"),
            consumers=("distributor", "gpu_stage", "llm_stage", "tracker"),
            sends=(("cofi cancel", ("BatchCancelled",)), ("cofi drain", ("HostDrained",))),
        ),
    ]


def _stage_message(stage: str) -> dict[str, Any]:
    return {
        "name": "FileStageCompleted",
        "title": f"FileStageCompleted (stage {stage})",
        "summary": f"A file finished stage `{stage}`.",
        "contentType": "application/json",
        "payload": {
            "allOf": [
                {"$ref": SCHEMAS.format(model="FileStageCompleted")},
                {"properties": {"stage": {"const": stage}}},
            ]
        },
        "bindings": _key_binding(FILE_KEY),
        "examples": [example_object(_after(stage))],
    }


def _key_binding(description: str) -> dict[str, Any]:
    return {
        "kafka": {"key": {"type": "string", "description": description}, "bindingVersion": "0.5.0"}
    }


def _messages(schemas: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "FileUploaded": BATCH_KEY,
        "BatchClosed": BATCH_KEY,
        "FileReassigned": BATCH_KEY,
        "FileFailed": FILE_KEY,
        "DeadLetter": "the poison record's own key (may be absent)",
        "DeadLetterReplayed": "the replayed letter's key (may be absent), or the retried "
        "file's key; its partition is the named record's own",
        "BatchCancelled": CANCEL_KEY,
        "HostDrained": HOST_KEY,
    }
    out: dict[str, Any] = {}
    for model in EVENTS:
        if model is FileStageCompleted:
            continue
        name = model.__name__
        out[name] = {
            "name": name,
            "title": name,
            "summary": (model.__doc__ or "").strip(),
            "contentType": "application/json",
            "payload": {"$ref": SCHEMAS.format(model=name)},
            "bindings": _key_binding(keys[name]),
            "examples": [example_object(name)],
        }
    for row in PIPELINE:
        out[_after(row.name)] = _stage_message(row.name)
    assert set(schemas) >= {m.__name__ for m in EVENTS}
    return out


def _parameters(channel: Channel) -> dict[str, Any]:
    params: dict[str, Any] = {
        "prefix": {
            "description": "TOPIC_PREFIX of the deployment",
            "default": CommonSettings.model_fields["topic_prefix"].default,
        }
    }
    if channel.per_host:
        params["host"] = {"description": "a GPU host's address, as listed in GPU_HOSTS"}
    return params


def _plan() -> dict[str, TopicSpec]:
    """The topic plan of `cofi topics` at the settings' defaults, by address template."""
    sample = CommonSettings.model_construct(topic_prefix="{prefix}", gpu_hosts=[GpuHost(ip=HOST)])
    return {spec.name: spec for spec in sample.topic_plan()}


def _channel(channel: Channel) -> dict[str, Any]:
    spec = _plan()[channel.address]
    configs = dict(spec.configs)
    kafka: dict[str, Any] = {
        "partitions": spec.partitions,
        "replicas": spec.replication_factor,
        "topicConfiguration": {
            "cleanup.policy": [configs.pop("cleanup.policy")],
            "retention.ms": int(configs.pop("retention.ms")),
        },
        "bindingVersion": "0.5.0",
    }
    if configs:
        kafka["x-configs"] = configs
    return {
        "address": channel.address,
        "title": channel.id,
        "description": channel.description,
        "parameters": _parameters(channel),
        "messages": {
            name.replace(".", "_"): {"$ref": f"#/components/messages/{name}"}
            for name in channel.messages
        },
        "bindings": {"kafka": kafka},
        "x-producers": list(channel.producers),
        "x-consumers": list(channel.consumers),
    }


def _operations(chans: list[Channel]) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    for channel in chans:
        sends = dict(channel.sends)
        for action, actors in (("send", channel.producers), ("receive", channel.consumers)):
            for actor in actors:
                names = sends.get(actor, channel.messages) if action == "send" else None
                op_id = f"{actor.replace(' ', '_')}_{action}s_{channel.id}"
                ops[op_id] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel.id}"},
                    "summary": f"{actor} {action}s on {channel.address}",
                    "messages": [
                        {"$ref": f"#/channels/{channel.id}/messages/{name.replace('.', '_')}"}
                        for name in (names or channel.messages)
                    ],
                }
    return ops


# SASL over TLS, as `KAFKA_SECURITY_PROTOCOL=SASL_SSL` and `KAFKA_SASL_MECHANISM` choose.
SECURITY: dict[str, Any] = {
    "scramSha512": {
        "type": "scramSha512",
        "description": "SASL SCRAM-SHA-512 over TLS (`KAFKA_SASL_MECHANISM`, the default)",
    },
    "scramSha256": {"type": "scramSha256", "description": "SASL SCRAM-SHA-256 over TLS"},
    "plain": {"type": "plain", "description": "SASL PLAIN over TLS"},
}


def _servers() -> dict[str, Any]:
    bootstrap = CommonSettings.model_fields["kafka_bootstrap_servers"].default
    return {
        "production": {
            "host": "{bootstrap}",
            "protocol": "kafka-secure",
            "description": (
                "A production cluster: SASL_SSL (`KAFKA_SECURITY_PROTOCOL=SASL_SSL`, "
                "`KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`, "
                "`KAFKA_SSL_CAFILE`); any one of the SASL mechanisms below, over TLS"
            ),
            "variables": {"bootstrap": {"description": "KAFKA_BOOTSTRAP_SERVERS, `host:port[,…]`"}},
            "security": [{"$ref": f"#/components/securitySchemes/{name}"} for name in SECURITY],
            "bindings": {"kafka": {"bindingVersion": "0.5.0"}},
        },
        "development": {
            "host": bootstrap,
            "protocol": "kafka",
            "description": "A local broker without TLS or SASL (`make infra`, the tests)",
        },
    }


def build() -> dict[str, Any]:
    _, schema = models_json_schema(
        [(model, "validation") for model in EVENTS], ref_template=SCHEMAS
    )
    schemas: dict[str, Any] = schema["$defs"]
    for definition in schemas.values():
        # The decoders' tagged unions read `type` first: without it a message is refused.
        if "const" in definition.get("properties", {}).get("type", {}):
            definition["required"] = ["type", *definition.get("required", [])]
    chans = channels()
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "cofi topics",
            "version": "1",
            "description": (
                "Every topic of the cofi call-audio pipeline. Generated by `cofi contracts` "
                "from shared/pipeline.py, shared/topics.py and shared/events.py; do not edit. "
                "Every message is JSON with `v` (schema version, 1) and `type` (its model's "
                "name); consumers ignore fields they do not know. Producers use acks=all and "
                "idempotence; delivery is at least once, so consumers must be idempotent. "
                "Partitions, replicas and topic configs are `cofi topics`' plan at the "
                "settings' defaults (`STAGE_PARTITIONS`, `TOPIC_REPLICATION_FACTOR`, "
                "`TOPIC_MIN_INSYNC_REPLICAS`, `*_RETENTION_HOURS`)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": _servers(),
        "channels": {c.id: _channel(c) for c in chans},
        "operations": _operations(chans),
        "components": {
            "schemas": schemas,
            "messages": _messages(schemas),
            "securitySchemes": SECURITY,
        },
    }


def render() -> str:
    import yaml  # a development dependency: the documents are generated in the repository

    header = "# Generated by `cofi contracts` from the code; do not edit (a test checks it).\n"
    return header + yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=100)
