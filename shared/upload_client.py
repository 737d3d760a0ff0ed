"""The upload system's client: announce a batch's audio files to cofi, then close the batch.

    from shared.upload_client import UploadClient

    async with UploadClient("kafka:9092", topic_prefix="cofi") as client:
        for path in paths:
            await client.submit_file("batch-42", path.name, path.resolve().as_uri())
        await client.close_batch("batch-42", file_count=len(paths))

or, for a folder of files, `await client.submit_batch("batch-42", paths)`.

The contract it keeps (docs/upload-client.md, docs/asyncapi.yaml):
- every message goes to `<prefix>.uploads`, keyed by the batch id, so a batch's messages stay
  in one partition, in order;
- `BatchClosed{file_count}` is sent only after the broker acknowledged every file of the
  batch sent through this client (same key, so it is read after them);
- the producer waits for all in-sync replicas (acks=all) and is idempotent, so a retried send
  never duplicates or reorders; sending a file twice is harmless (cofi keys files by
  batch and name);
- messages are validated by the models of `shared/events.py` before anything is sent: a bad
  batch id or an empty file name raises `pydantic.ValidationError` (a `ValueError`).

It imports only `shared` (aiokafka and pydantic), never a service.
"""

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaProducer

from shared.call_audio import CallHeaderError, call_seconds_of
from shared.events import BatchClosed, FileUploaded, encode, utcnow
from shared.kafka import Kafka, make_producer
from shared.topics import Topics

# Sends in flight before the client waits for their acknowledgements.
WINDOW = 1000


def duration_of(path: Path) -> float | None:
    """The call's length from its WAV header (shared/call_audio.py), or None if unreadable."""
    try:
        return call_seconds_of(path)
    except (OSError, CallHeaderError):
        return None  # a corrupt file is still announced: the GPU stage will reject it


def uploads_for(batch_id: str, paths: Iterable[Path]) -> list[FileUploaded]:
    """One `FileUploaded` per local file: its name, its absolute `file://` URI and the call's
    length read from the WAV header (`duration_s`; None when the header is unreadable)."""
    return [
        FileUploaded(
            batch_id=batch_id,
            file_name=p.name,
            audio_uri=p.resolve().as_uri(),
            duration_s=duration_of(p),
        )
        for p in paths
    ]


class UploadClient:
    """Publishes `FileUploaded` and `BatchClosed` to cofi's uploads topic.

    Use it as an async context manager (or call `start` and `stop`). One client may serve
    many batches, concurrently or not.
    """

    def __init__(
        self,
        kafka: Kafka,
        topic_prefix: str = "cofi",
        *,
        client_id: str = "cofi-upload",
    ) -> None:
        """`kafka`: `host:port[,host:port]`, or a `KafkaConnection` (SASL, TLS) such as
        `CommonSettings().kafka` builds from the `KAFKA_*` variables."""
        self.topic = Topics(topic_prefix).uploads
        self._producer: AIOKafkaProducer = make_producer(kafka, client_id)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        """Flushes what is still buffered, then disconnects."""
        await self._producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def submit_file(
        self,
        batch_id: str,
        file_name: str,
        audio_uri: str,
        uploaded_at: datetime | None = None,
        duration_s: float | None = None,
    ) -> FileUploaded:
        """Announce one file; returns once the broker acknowledged it. `duration_s`, the
        call's length if known, lets cofi balance its GPU hosts by audio seconds."""
        event = FileUploaded(
            batch_id=batch_id,
            file_name=file_name,
            audio_uri=audio_uri,
            uploaded_at=uploaded_at or utcnow(),
            duration_s=duration_s,
        )
        await self._send(event.batch_id, encode(event))
        return event

    async def submit_files(
        self,
        uploads: Iterable[FileUploaded],
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Announce many files (any batches), pipelined; returns once all are acknowledged.

        `on_progress(n)` is called with the number of files acknowledged so far.
        """
        pending: list[asyncio.Future[object]] = []
        acked = 0
        for event in uploads:
            pending.append(await self._producer.send(self.topic, encode(event), key=_key(event)))
            if len(pending) >= WINDOW:
                await asyncio.gather(*pending)
                acked += len(pending)
                pending.clear()
                if on_progress:
                    on_progress(acked)
        await asyncio.gather(*pending)
        acked += len(pending)
        if on_progress and pending:
            on_progress(acked)
        return acked

    async def close_batch(self, batch_id: str, file_count: int) -> BatchClosed:
        """Tell cofi the batch holds exactly `file_count` files.

        Call it after every file of the batch was acknowledged (`submit_file` and
        `submit_files` return only then): cofi counts a batch complete from this number.
        """
        event = BatchClosed(batch_id=batch_id, file_count=file_count)
        await self._send(event.batch_id, encode(event))
        return event

    async def submit_batch(
        self,
        batch_id: str,
        paths: Iterable[Path],
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Announce every local file of a batch, then close it; returns the number of files."""
        uploads = uploads_for(batch_id, paths)
        count = await self.submit_files(uploads, on_progress)
        await self.close_batch(batch_id, count)
        return count

    async def _send(self, batch_id: str, value: bytes) -> None:
        await self._producer.send_and_wait(self.topic, value, key=batch_id.encode())


def _key(event: FileUploaded) -> bytes:
    return event.batch_id.encode()
