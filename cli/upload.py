"""The upload system's side: announce a batch's files, then close the batch."""

import asyncio
from collections.abc import Callable
from pathlib import Path

from shared.events import BatchClosed, FileUploaded, encode
from shared.kafka import Kafka, make_producer


def uploads_for(batch_id: str, paths: list[Path]) -> list[FileUploaded]:
    return [
        FileUploaded(batch_id=batch_id, file_name=p.name, audio_uri=p.resolve().as_uri())
        for p in paths
    ]


async def submit(
    bootstrap: Kafka,
    topic: str,
    batch_id: str,
    paths: list[Path],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Publish every file and then `BatchClosed`; returns the number of files."""
    producer = make_producer(bootstrap, "cofi-upload")
    await producer.start()
    try:
        key = batch_id.encode()
        pending = []
        for i, event in enumerate(uploads_for(batch_id, paths), start=1):
            pending.append(await producer.send(topic, encode(event), key=key))
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
                if on_progress:
                    on_progress(i)
        await asyncio.gather(*pending)
        closed = BatchClosed(batch_id=batch_id, file_count=len(paths))
        await producer.send_and_wait(topic, encode(closed), key=key)
        if on_progress:
            on_progress(len(paths))
        return len(paths)
    finally:
        await producer.stop()
