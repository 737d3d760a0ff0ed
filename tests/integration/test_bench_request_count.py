"""The bench's direct count of Kafka requests (issue 21, figure 5): a process started with
`bench.request_count.hook_env` counts every request it sends a real broker, by kind."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench import request_count
from shared.kafka import ensure_topics
from tests.kafka_helpers import wait_until

pytestmark = pytest.mark.integration

# Sends three records, one produce request each, then waits to be stopped.
CHILD = """
import asyncio, sys
from aiokafka import AIOKafkaProducer

async def main() -> None:
    producer = AIOKafkaProducer(bootstrap_servers=sys.argv[1])
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(sys.argv[2], b"%d" % n)
        print("sent", flush=True)
        await asyncio.sleep(3600)
    finally:
        await producer.stop()

asyncio.run(main())
"""


async def test_a_hooked_process_counts_the_requests_it_sends(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topic = f"{topic_prefix}.counted"
    await ensure_topics(kafka_bootstrap, [topic], 1)
    folder = tmp_path / "requests"
    env = {"PATH": "/usr/bin:/bin", **request_count.hook_env(folder)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kafka_bootstrap, topic],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "sent"
        await wait_until(
            lambda: request_count.read(folder, [child.pid])["Produce"] == 3,
            timeout_s=30,
            what=lambda: (
                f"three produce requests counted: {request_count.read(folder, [child.pid])}"
            ),
        )
        counted = request_count.read(folder, [child.pid])
        assert counted["Metadata"] >= 1  # what a producer asks first
        assert request_count.read(folder, [child.pid + 10_000_000]) == {}  # another process
    finally:
        child.terminate()
        child.wait(timeout=30)


def test_between_keeps_only_what_grew() -> None:
    assert request_count.between({"Fetch": 5, "Produce": 2}, {"Fetch": 9, "Produce": 2}) == {
        "Fetch": 4
    }
