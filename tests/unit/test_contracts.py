"""The contracts with the teams around cofi are generated from the code and cannot drift:
docs/asyncapi.yaml (every topic) and docs/gpu-model-api.{yaml,md} (what GPU hosts serve)."""

import json
import re
from functools import cache
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate as validate_openapi

from cli import asyncapi, gpu_api
from cli.contracts import DOCUMENTS, stale
from services.gpu_stage import exchange
from services.gpu_stage.model_contract import RESPONSES, ModelRequest
from shared.events import (
    Attempt,
    BatchCancelled,
    BatchClosed,
    DeadLetter,
    Event,
    FileContext,
    FileFailed,
    FileStageCompleted,
    FileUploaded,
    TriageDecision,
    encode,
)
from shared.pipeline import PIPELINE
from shared.settings import CommonSettings
from shared.stages import GPU_STAGES
from shared.topics import Topics
from simulator.audio import AudioInfo
from simulator.outputs import stage_output

T0 = "2026-12-02T00:00:00Z"


def test_the_committed_documents_are_what_the_code_renders() -> None:
    assert not stale(), "stale: run cofi contracts"
    assert {p.name for p, _ in DOCUMENTS} == {
        "asyncapi.yaml",
        "gpu-model-api.yaml",
        "gpu-model-api.md",
    }


# --- AsyncAPI ------------------------------------------------------------------------------


@cache
def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(asyncapi.PATH.read_text())
    return doc


def _channel_of(topic: str, doc: dict[str, Any]) -> str:
    found: list[str] = []
    for cid, channel in doc["channels"].items():
        pattern = re.escape(channel["address"])
        pattern = pattern.replace(r"\{prefix\}", "(?P<prefix>p)").replace(r"\{host\}", ".+")
        if re.fullmatch(pattern, topic):
            found.append(cid)
    assert len(found) == 1, (topic, found)
    return found[0]


def test_every_topic_has_exactly_one_channel_and_every_channel_a_topic() -> None:
    doc = _doc()
    assert doc["asyncapi"] == "3.0.0"
    topics = Topics("p").all_topics(["10.0.0.1", "10.0.0.2"])
    used = {_channel_of(t, doc) for t in topics}
    assert used == set(doc["channels"])
    control = doc["channels"]["control"]["bindings"]["kafka"]
    assert control["topicConfiguration"] == {"cleanup.policy": ["compact"], "retention.ms": -1}
    # Partitions, replicas and configs are `cofi topics`' plan at the defaults.
    plan = {spec.name: spec for spec in CommonSettings.model_construct().topic_plan()}
    uploads = doc["channels"]["uploads"]["bindings"]["kafka"]
    assert uploads["partitions"] == plan["cofi.uploads"].partitions
    assert uploads["replicas"] == plan["cofi.uploads"].replication_factor
    assert (
        str(uploads["topicConfiguration"]["retention.ms"])
        == (plan["cofi.uploads"].configs["retention.ms"])
    )


def test_every_reference_resolves_and_operations_point_at_their_channels_messages() -> None:
    doc = _doc()
    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node: Any = doc
        for part in ref.split("/"):
            node = node[part]
    for op in doc["operations"].values():
        assert op["action"] in ("send", "receive")
        channel = op["channel"]["$ref"].removeprefix("#/channels/")
        for message in op["messages"]:
            assert message["$ref"].startswith(f"#/channels/{channel}/messages/")


def test_the_ordering_and_key_rules_are_stated() -> None:
    uploads = _doc()["channels"]["uploads"]
    assert (
        "`BatchClosed` comes after every `FileUploaded` of its batch, with the same key"
        in (uploads["description"])
    )
    messages = _doc()["components"]["messages"]
    assert messages["BatchClosed"]["bindings"]["kafka"]["key"]["description"].startswith(
        "the batch id"
    )
    assert (
        "`{batch_id}/{file_name}`"
        in messages["FileFailed"]["bindings"]["kafka"]["key"]["description"]
    )


def _samples() -> dict[str, Event]:
    attempt = Attempt(number=1, host="h", ok=True, started_at=T0, request={"a": 1})
    context = FileContext(
        audio_uri="file:///a.wav",
        host="h",
        triage=TriageDecision(route="skip", rule="ivr", reason="IVR call"),
    )
    samples: dict[str, Event] = {
        "FileUploaded": FileUploaded(batch_id="b", file_name="a.wav", audio_uri="file:///a.wav"),
        "BatchClosed": BatchClosed(batch_id="b", file_count=1),
        "FileFailed": FileFailed(
            batch_id="b",
            file_name="a.wav",
            stage="stt",
            error_kind="permanent",
            error="HTTP 422",
            attempts=(attempt,),
            input_event={"x": 1},
        ),
        "DeadLetter": DeadLetter(
            source_topic="t", partition=0, offset=1, consumer="c", error="e", value_b64="AA=="
        ),
        "BatchCancelled": BatchCancelled(batch_id="b", reason="r"),
    }
    for row in PIPELINE:
        samples[f"FileStageCompleted.{row.name}"] = FileStageCompleted(
            batch_id="b", file_name="a.wav", stage=row.name, context=context, attempts=(attempt,)
        )
    return samples


def _validator(doc: dict[str, Any], message: str) -> jsonschema.Draft202012Validator:
    schema = {**doc["components"]["messages"][message]["payload"], "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("message", sorted(_samples()))
def test_what_cofi_publishes_validates_against_the_documented_schema(message: str) -> None:
    doc = _doc()
    assert set(_samples()) <= set(doc["components"]["messages"])
    _validator(doc, message).validate(json.loads(encode(_samples()[message])))


def test_a_stage_channels_message_names_the_stage_it_follows() -> None:
    doc = _doc()
    wrong = json.loads(encode(_samples()["FileStageCompleted.lid"]))
    with pytest.raises(jsonschema.ValidationError):
        _validator(doc, "FileStageCompleted.denoise").validate(wrong)
    with pytest.raises(jsonschema.ValidationError):
        _validator(doc, "FileUploaded").validate({"type": "FileUploaded", "batch_id": "b"})


# --- GPU model API -------------------------------------------------------------------------


def test_the_openapi_document_is_valid_and_covers_every_gpu_stage() -> None:
    doc = yaml.safe_load(gpu_api.YAML_PATH.read_text())
    validate_openapi(doc)
    assert set(doc["paths"]) == {f"/v1/{s}" for s in GPU_STAGES} | {"/health"}
    # The breaker probes /health on every stage's port.
    assert len(doc["paths"]["/health"]["servers"]) == len(GPU_STAGES)
    responses = doc["paths"]["/v1/stt"]["post"]["responses"]
    assert "permanent" in responses["422"]["description"]
    assert "instead of failing" in responses["503"]["description"]
    assert "Retry-After" in responses["429"]["headers"]
    assert "Retry-After" in responses["503"]["headers"]
    assert "circuit for the stage opens" in responses["401"]["description"]
    assert "the file fails at once" not in responses["403"]["description"]


def test_the_error_table_comes_from_the_real_client() -> None:
    kinds = {a.what: a.kind for a in gpu_api.answers()}
    assert kinds["200, what the contract accepts"] == "ok"
    assert kinds["200, anything else"] == "transient"
    assert {kinds[s] for s in ("400", "404", "422")} == {"permanent"}
    assert {kinds[s] for s in ("429", "500", "503", "504")} == {"transient"}
    assert kinds["connection refused or reset"] == "transient"
    opens = {a.what: (a.opens_after, a.same_message) for a in gpu_api.answers()}
    assert opens["401"] == opens["403"] == (1, False)
    assert opens["404"] == (2, True)  # a missing route, not a missing file
    assert opens["422"] == (None, False)
    assert opens["429"] == (10, False)  # the host pacing every caller: the stage pauses
    assert opens["200, anything else"] == (3, False)
    # Refused, 429, 503, 504: the host unavailable, never the file; a malformed 200: the
    # host's defect, never the file's. Spent retries on any of them wait.
    waits = {a.what for a in gpu_api.answers() if a.waits}
    assert waits == {"200, anything else", "429", "503", "504", "connection refused or reset"}


def _event(stage: str) -> FileStageCompleted:
    context = FileContext(audio_uri="file:///a.wav", host="h", language="en")
    return FileStageCompleted(batch_id="b", file_name="a.wav", stage="lid", context=context)


@pytest.mark.parametrize("stage", GPU_STAGES)
def test_what_the_stage_sends_and_reads_is_what_the_contract_says(stage: Any) -> None:
    request = ModelRequest.model_validate(exchange.request_for(stage, _event(stage)))
    assert (request.inputs.language == "en") == (stage == "stt")
    model = RESPONSES[stage]
    audio = AudioInfo(path="/a.wav", frames=8000, rate=8000, channels=1, sample_width=2)
    # The simulator's answer satisfies the contract, and the stage reads it.
    answer = stage_output(stage, "a.wav", "file:///a.wav", audio, ivr_rate=0.5, languages={"en": 1})
    model.model_validate(answer)
    exchange.context_after(stage, _event(stage).context, dict(answer))
    # Without any field the contract requires, the stage refuses the answer.
    for name, field in model.model_fields.items():
        if field.is_required():
            partial = {k: v for k, v in answer.items() if k != name}
            with pytest.raises((KeyError, ValueError, TypeError)):
                exchange.context_after(stage, _event(stage).context, partial)
