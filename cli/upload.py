"""`cofi submit`: the upload system's side, through the upload client (shared/upload_client.py)."""

from collections.abc import Callable
from pathlib import Path

from shared.kafka import Kafka
from shared.topics import Topics
from shared.upload_client import UploadClient, uploads_for

__all__ = ["submit", "uploads_for"]


async def submit(
    kafka: Kafka,
    topics: Topics,
    batch_id: str,
    paths: list[Path],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Publish every file and then `BatchClosed` to the uploads topic of `topics`."""
    async with UploadClient(kafka, topics.prefix) as client:
        return await client.submit_batch(batch_id, paths, on_progress)
