"""`cofi submit` against the real broker, as a subprocess: a progress bar on a terminal, one
line in a pipe, and every file on the uploads topic."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from shared.topics import Topics

ROOT = Path(__file__).resolve().parents[2]


def cofi(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def _count(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))
        starts = await consumer.beginning_offsets(list(partitions))
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


def test_submit_of_a_large_folder_draws_a_progress_bar_on_a_terminal(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    folder = tmp_path / "calls"
    folder.mkdir()
    for i in range(2500):
        (folder / f"call_{i:05d}.wav").write_bytes(b"")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TOPIC_PREFIX": topic_prefix}
    assert cofi("topics", **env).returncode == 0

    # rich draws for a terminal; these make the pipe one, with the final frame only.
    tty = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0"}
    done = cofi("submit", "big", "--folder", str(folder), **env, **tty)
    assert done.returncode == 0, done.stderr
    assert "submitting big" in done.stderr and "2500/2500" in done.stderr
    assert "━" in done.stderr  # the bar
    assert done.stdout == "submitted batch big: 2500 files, then BatchClosed\n"

    synthetic = cofi(
        "submit", "syn", "--synthetic", "3", "--workdir", str(tmp_path / "audio"), **env, **tty
    )
    assert synthetic.returncode == 0, synthetic.stderr
    assert "making WAV files" in synthetic.stderr and "3/3" in synthetic.stderr

    piped = cofi("submit", "piped", "--folder", str(folder), **env)
    assert piped.returncode == 0 and piped.stderr == ""  # no bar where no one watches

    uploads = asyncio.run(_count(kafka_bootstrap, Topics(topic_prefix).uploads))
    assert uploads == (2500 + 1) + (3 + 1) + (2500 + 1)  # each file, then BatchClosed
