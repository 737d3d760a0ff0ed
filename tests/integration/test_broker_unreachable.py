"""A service started while the broker is down waits for it instead of crash-looping."""

import asyncio
import contextlib

import pytest

from shared.kafka import make_producer, start_when_reachable
from tests.kafka_helpers import wait_until


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_a_producer_started_before_the_broker_answers_starts_once_it_does(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = kafka_bootstrap.split(",")[0].rsplit(":", 1)
    # A closed port that later becomes a TCP relay to the real broker: "the broker came back".
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    relay_port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()

    producer = make_producer(f"127.0.0.1:{relay_port}", "test")
    starting = asyncio.create_task(start_when_reachable(producer, "test producer"))
    await wait_until(
        lambda: caplog.text.count("broker unreachable") >= 2,
        timeout_s=20,
        what="two failed attempts against the closed port",
    )
    assert not starting.done(), "start must keep waiting while the broker is unreachable"

    async def relay(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        br, bw = await asyncio.open_connection(host, int(port))
        await asyncio.gather(_pipe(r, bw), _pipe(br, w))

    server = await asyncio.start_server(relay, "127.0.0.1", relay_port)
    try:
        assert await asyncio.wait_for(starting, timeout=30)
        await producer.stop()
    finally:
        server.close()
