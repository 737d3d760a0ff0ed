"""Decoding events keeps nothing of the files it has seen (issue 6, figure 5: bounded memory).

pydantic's JSON parser can keep short string values in a process-wide cache; every file has
new ones (file name, URI, timestamps), so a service decoding its events that way holds
megabytes it never reuses until the cache is full. Events keep only their keys there.
"""

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from shared.events import (
    BatchCancelled,
    FileContext,
    FileStageCompleted,
    FileUploaded,
    any_event,
    encode,
    upload_event,
)


def stage_completed(i: int) -> bytes:
    return encode(
        FileStageCompleted(
            batch_id=f"batch-{i // 1000}",
            file_name=f"call-{i:06d}.wav",
            stage="stt",
            context=FileContext(audio_uri=f"file:///calls/call-{i:06d}.wav", language="en"),
        )
    )


def uploaded(i: int) -> bytes:
    return encode(
        FileUploaded(
            batch_id="batch-1", file_name=f"call-{i:06d}.wav", audio_uri=f"file:///c/{i}.wav"
        )
    )


DECODERS: dict[str, tuple[Callable[[bytes], Any], Callable[[int], bytes]]] = {
    "FileStageCompleted": (FileStageCompleted.model_validate_json, stage_completed),
    "any_event": (any_event.validate_json, stage_completed),
    "upload_event": (upload_event.validate_json, uploaded),
}


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_a_decoded_events_values_are_not_cached_across_decodes(decoder: str) -> None:
    decode, make = DECODERS[decoder]
    raw = make(7)
    first, second = decode(raw), decode(raw)
    assert first == second
    # A cached value would be handed out again: the same object both times.
    assert first.file_name is not second.file_name
    assert first.batch_id is not second.batch_id


def test_a_control_events_batch_id_is_not_cached() -> None:
    raw = encode(BatchCancelled(batch_id="batch-cancelled-1"))
    first, second = (BatchCancelled.model_validate_json(raw) for _ in range(2))
    assert first.batch_id is not second.batch_id


def test_decoding_many_files_events_leaves_no_memory_behind() -> None:
    events = [stage_completed(i) for i in range(10_000)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for raw in events:
            FileStageCompleted.model_validate_json(raw)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Cached, these files' names, URIs and timestamps would hold about 1 MiB.
    assert kept < 128 * 1024, f"{kept / 1024:.0f} KiB kept after decoding 10,000 events"
