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
    """Run a service's `run(..., stop)` as a task; stop it (and surface its errors) on exit.

    A service that fails while the body waits on it ends the body at once with the service's
    own error, rather than leaving the body to time out waiting for what it will never do."""
    stop = asyncio.Event()
    body = asyncio.current_task()
    task = asyncio.create_task(service(stop))

    def interrupt(done: asyncio.Task[None]) -> None:
        if body is not None and not stop.is_set() and _failure(done) is not None:
            body.cancel()

    task.add_done_callback(interrupt)
    try:
        yield
    except asyncio.CancelledError:
        if body is None or _failure(task) is None:
            raise
        body.uncancel()  # the cancel was ours; the service's error is raised below
    finally:
        stop.set()
        task.remove_done_callback(interrupt)
        await asyncio.wait_for(task, timeout=60)


def _failure(task: asyncio.Task[None]) -> BaseException | None:
    if not task.done() or task.cancelled():
        return None
    return task.exception()
