"""docs/asyncapi.yaml held to the code in both directions, and to the official AsyncAPI 3 schema:
messages generated from the document's schemas are accepted by the decoders, and what the
decoders accept validates against the document."""

import hashlib
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from cli import asyncapi
from cli.asyncapi_examples import examples
from shared.events import MAX_CALL_S, Event, any_event, control_event, encode, upload_event
from shared.model_stage import decoder_for
from shared.pipeline import PIPELINE

OFFICIAL = Path(__file__).parent.parent / "contract_schemas" / "asyncapi-3.0.0.json"
OFFICIAL_SHA256 = "abe96881dbfaad495ccbb6bd8d3fb43ca18a13b9d7564849ccb66f39d5e5b20f"


@cache
def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(asyncapi.PATH.read_text())
    return doc


def test_the_document_is_valid_asyncapi_3_by_the_official_schema() -> None:
    raw = OFFICIAL.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == OFFICIAL_SHA256  # the vendored file, unchanged
    schema = json.loads(raw)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(_doc()), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]
    # The schema does catch a broken document (it is not vacuous).
    broken = {**_doc(), "channels": {"x": {"address": 42}}}
    assert not validator.is_valid(broken)


def _decoders() -> dict[str, Callable[[bytes], Any]]:
    """Channel id -> what its consumers decode with (shared/events.py)."""
    out: dict[str, Callable[[bytes], Any]] = {
        "uploads": upload_event.validate_json,
        "control": control_event.validate_json,
        "done": any_event.validate_json,
        "failed": any_event.validate_json,
    }
    for row in PIPELINE[1:]:
        out[row.name] = decoder_for(row.name)
    return out


def _message_channels() -> list[tuple[str, str]]:
    """(channel id, message name) for every message of every channel."""
    pairs = []
    for cid, channel in _doc()["channels"].items():
        for ref in channel["messages"].values():
            pairs.append((cid, ref["$ref"].removeprefix("#/components/messages/")))
    return pairs


def _payload_schema(message: str) -> dict[str, Any]:
    doc = _doc()
    payload = doc["components"]["messages"][message]["payload"]
    return {**payload, "components": {"schemas": doc["components"]["schemas"]}}


def test_every_event_the_code_has_is_a_message_with_an_example_and_a_key() -> None:
    messages = _doc()["components"]["messages"]
    names = {m.__name__ for m in asyncapi.EVENTS}
    assert {name.split(".")[0] for name in messages} == names
    assert {"FileReassigned", "HostDrained"} <= names
    for name, message in messages.items():
        assert message["examples"], name
        assert message["bindings"]["kafka"]["key"]["description"], name
    control = messages["HostDrained"]["bindings"]["kafka"]["key"]["description"]
    assert control.startswith("`host:{ip}`")
    # A key space apart from the drains' (a batch named `host:x` never overwrites a drain).
    assert messages["BatchCancelled"]["bindings"]["kafka"]["key"]["description"].startswith(
        "`batch:{batch_id}`"
    )
    assert {"FileReassigned", "HostDrained"} <= {m for _, m in _message_channels()}


def test_type_is_required_in_every_message() -> None:
    for _, message in _message_channels():
        validator = jsonschema.Draft202012Validator(_payload_schema(message))
        example = _doc()["components"]["messages"][message]["examples"][0]["payload"]
        validator.validate(example)
        without = {k: v for k, v in example.items() if k != "type"}
        assert not validator.is_valid(without), message


@pytest.mark.parametrize(("channel", "message"), _message_channels())
def test_each_example_decodes_on_its_channel_and_its_key_is_the_documented_one(
    channel: str, message: str
) -> None:
    example = _doc()["components"]["messages"][message]["examples"][0]
    decoded = _decoders()[channel](json.dumps(example["payload"]).encode())
    assert type(decoded).__name__ == message.split(".")[0]
    _event, key = examples()[message]
    assert example["summary"] == (f"key: `{key.decode()}`" if key else "no key")


SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _check_accepted(channel: str, message: str, payload: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(_payload_schema(message))
    validator.validate(payload)
    event = _decoders()[channel](json.dumps(payload).encode())
    assert type(event).__name__ == message.split(".")[0]
    # What the decoder accepted, as cofi writes it again, is what the document says.
    validator.validate(json.loads(encode(event)))


def _stage_message(message: str) -> bool:
    return message.startswith("FileStageCompleted.")


@pytest.mark.parametrize(
    ("channel", "message"), [p for p in _message_channels() if not _stage_message(p[1])]
)
def test_messages_generated_from_the_document_are_accepted_by_the_decoders(
    channel: str, message: str
) -> None:
    @SETTINGS
    @given(payload=from_schema(_payload_schema(message)))
    def accepted(payload: dict[str, Any]) -> None:
        _check_accepted(channel, message, payload)

    accepted()


def test_stage_messages_generated_from_the_document_are_accepted_by_each_channels_decoder() -> None:
    """Stage channels' messages differ only in `stage` (a const): one strategy for all."""
    stage_messages = [p for p in _message_channels() if _stage_message(p[1])]
    assert len({m for _, m in stage_messages}) == len(PIPELINE)
    doc = _doc()
    base = {"$ref": "#/components/schemas/FileStageCompleted", "components": doc["components"]}

    @SETTINGS
    @given(payload=from_schema(base), pick=st.sampled_from(stage_messages))
    def accepted(payload: dict[str, Any], pick: tuple[str, str]) -> None:
        channel, message = pick
        _check_accepted(channel, message, {**payload, "stage": message.split(".")[1]})

    accepted()


def _event_samples() -> list[tuple[str, Event]]:
    return [(name, event) for name, (event, _key) in examples().items()]


@pytest.mark.parametrize(("message", "event"), _event_samples())
def test_what_the_decoders_accept_validates_against_the_document(
    message: str, event: Event
) -> None:
    validator = jsonschema.Draft202012Validator(_payload_schema(message))
    validator.validate(json.loads(encode(event)))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    batch_id=st.text(min_size=1, max_size=64),
    file_name=st.text(min_size=1, max_size=40),
    uri=st.text(min_size=1, max_size=40),
    seconds=st.none() | st.floats(min_value=0, max_value=MAX_CALL_S, allow_nan=False),
    extra=st.dictionaries(st.sampled_from(["x_source", "note"]), st.text(max_size=5)),
)
def test_any_upload_the_decoder_accepts_validates(
    batch_id: str, file_name: str, uri: str, seconds: float | None, extra: dict[str, str]
) -> None:
    body: dict[str, Any] = {"type": "FileUploaded", "batch_id": batch_id}
    body |= {"file_name": file_name, "audio_uri": uri, **extra}
    if seconds is not None:
        body["duration_s"] = seconds
    event = upload_event.validate_json(json.dumps(body))
    validator = jsonschema.Draft202012Validator(_payload_schema("FileUploaded"))
    validator.validate(body)  # the message as sent (unknown fields are allowed)
    validator.validate(json.loads(encode(event)))
