"""`cofi submit`: the upload system's side, through the upload client (shared/upload_client.py)."""

from collections.abc import Callable
from pathlib import Path

from shared.kafka import Kafka
from shared.upload_client import UploadClient, uploads_for

__all__ = ["submit", "uploads_for"]

UPLOADS_SUFFIX = ".uploads"


async def submit(
    kafka: Kafka,
    topic: str,
    batch_id: str,
    paths: list[Path],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Publish every file and then `BatchClosed` to `topic` (`<prefix>.uploads`)."""
    if not topic.endswith(UPLOADS_SUFFIX):
        raise ValueError(f"{topic!r} is not an uploads topic (<prefix>{UPLOADS_SUFFIX})")
    async with UploadClient(kafka, topic.removesuffix(UPLOADS_SUFFIX)) as client:
        return await client.submit_batch(batch_id, paths, on_progress)
