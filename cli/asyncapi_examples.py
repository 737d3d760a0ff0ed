"""One example per message of docs/asyncapi.yaml, made from the event models themselves (so
every example decodes), with the key it travels under."""

import json
from datetime import UTC, datetime
from typing import Any

from services.gpu_stage.model_contract import RESPONSES
from shared.events import (
    Attempt,
    BatchCancelled,
    BatchClosed,
    DeadLetter,
    DeadLetterReplayed,
    Event,
    FileContext,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    HostDrained,
    TriageDecision,
    encode,
    file_key,
)
from shared.pipeline import PIPELINE

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
BATCH = "batch-42"
FILE = "call-0001.wav"
HOST = "10.0.0.5"
AUDIO = f"file:///data/audio/{BATCH}/{FILE}"

# A file's context once every stage ran; a stage's example holds what the stages up to it wrote.
FULL = FileContext(
    audio_uri=AUDIO,
    host=HOST,
    denoised_uri=f"file:///data/denoised/{BATCH}/{FILE}",
    duration_s=212.4,
    is_ivr=False,
    language="en",
    triage=TriageDecision(route="stt", rule=None, reason="no rule matched: transcribe"),
    transcript="hello thanks for calling about my account balance",
    llm1={"summary": "Caller asks about a double charge.", "sentiment": "neutral", "topics": []},
    llm2={"disposition": "resolved", "compliance_flags": [], "score": 87},
)


def _written_by(stage: str) -> set[str]:
    """The context fields a stage writes: a GPU stage's answer fields (the model contract),
    else the field named after the stage (triage, the LLM stages), if there is one."""
    if stage in RESPONSES:
        return set(RESPONSES[stage].model_fields)
    return {stage} & set(FileContext.model_fields)


def stage_context(stage: str) -> FileContext:
    known = {"audio_uri", "host"}
    for row in PIPELINE:
        known |= _written_by(row.name)
        if row.name == stage:
            break
    return FileContext.model_validate(FULL.model_dump(include=known))


def _attempt(host: str | None, ok: bool = True, **fields: Any) -> Attempt:
    return Attempt(number=1, host=host, ok=ok, started_at=AT, duration_ms=812.5, **fields)


def stage_example(stage: str) -> tuple[Event, bytes]:
    event = FileStageCompleted(
        batch_id=BATCH,
        file_name=FILE,
        stage=stage,
        context=stage_context(stage),
        attempts=(_attempt(HOST),),
        completed_at=AT,
    )
    return event, file_key(BATCH, FILE)


def examples() -> dict[str, tuple[Event, bytes | None]]:
    """Message name -> (example, its key)."""
    failed_input = stage_example(PIPELINE[-1].name)[0]
    out: dict[str, tuple[Event, bytes | None]] = {
        "FileUploaded": (
            FileUploaded(
                batch_id=BATCH, file_name=FILE, audio_uri=AUDIO, uploaded_at=AT, duration_s=212.4
            ),
            BATCH.encode(),
        ),
        "BatchClosed": (BatchClosed(batch_id=BATCH, file_count=20, closed_at=AT), BATCH.encode()),
        "FileReassigned": (
            FileReassigned(
                batch_id=BATCH,
                file_name=FILE,
                audio_uri=AUDIO,
                stage=PIPELINE[1].name,
                from_host=HOST,
                duration_s=212.4,
                avoid=(HOST,),
                assignment=1,
                attempt_base=3,
                reason=f"GPU host {HOST} drained by an operator",
                requested_at=AT,
            ),
            BATCH.encode(),
        ),
        "FileFailed": (
            FileFailed(
                batch_id=BATCH,
                file_name=FILE,
                stage=PIPELINE[1].name,
                host=HOST,
                error_kind="permanent",
                error=f"HTTP 422 from http://{HOST}:5010: audio cannot be decoded",
                attempts=(_attempt(HOST, ok=False, error_kind="permanent", error="HTTP 422"),),
                input_event=failed_input.model_dump(mode="json", exclude_none=True),
                failed_at=AT,
            ),
            file_key(BATCH, FILE),
        ),
        "DeadLetter": (
            DeadLetter(
                source_topic="cofi.uploads",
                partition=3,
                offset=1207,
                consumer="distributor",
                error="undecodable: Input tag 'FileUpload' found using 'type' does not match",
                key_b64="YmF0Y2gtNDI=",
                value_b64="eyJ0eXBlIjogIkZpbGVVcGxvYWQifQ==",
                at=AT,
            ),
            BATCH.encode(),
        ),
        "DeadLetterReplayed": (
            DeadLetterReplayed(
                source_topic="cofi.uploads",
                partition=3,
                offset=1207,
                batch_id=BATCH,
                replayed_at=AT,
            ),
            BATCH.encode(),
        ),
        "BatchCancelled": (
            BatchCancelled(batch_id=BATCH, reason="uploaded twice", cancelled_at=AT),
            BATCH.encode(),
        ),
        "HostDrained": (
            HostDrained(host=HOST, drained=True, reason="GPU maintenance", at=AT),
            f"host:{HOST}".encode(),
        ),
    }
    for row in PIPELINE:
        event, key = stage_example(row.name)
        out[f"FileStageCompleted.{row.name}"] = (event, key)
    return out


def example_object(name: str) -> dict[str, Any]:
    event, key = examples()[name]
    summary = f"key: `{key.decode()}`" if key is not None else "no key"
    return {
        "name": name.replace(".", "_"),
        "summary": summary,
        "payload": json.loads(encode(event)),
    }
