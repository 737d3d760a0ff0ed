"""Run one stage service in-process against the simulator, for integration tests."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from shared.events import FileContext, FileStageCompleted, encode, file_key
from shared.kafka import make_producer


def stage_input(
    batch: str, path: Path, host: str, stage: str = "distribute", **context: object
) -> FileStageCompleted:
    return FileStageCompleted(
        batch_id=batch,
        file_name=path.name,
        stage=stage,
        context=FileContext(audio_uri=path.resolve().as_uri(), host=host, **context),
    )


async def produce_events(bootstrap: str, topic: str, events: list[FileStageCompleted]) -> None:
    producer = make_producer(bootstrap, "test")
    await producer.start()
    try:
        acks = [
            await producer.send(topic, encode(e), key=file_key(e.batch_id, e.file_name))
            for e in events
        ]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


@asynccontextmanager
async def running(
    service: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
) -> AsyncIterator[None]:
    """Run a service's `run(..., stop)` as a task; stop it (and surface its errors) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(service(stop))
    try:
        yield
        if task.done():
            task.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
