"""`cofi submit` against the real broker, as a subprocess: a progress bar on a terminal, one
line in a pipe, every file on the uploads topic, and a batch id used before refused."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import create_async_engine

from services.tracker.migrate import migrate
from shared.events import FileUploaded
from shared.topics import Topics
from tests.tracker_scenario import tracker_for

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


async def test_submit_to_a_batch_id_already_used_is_refused_and_sends_nothing(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "calls"
    folder.mkdir()
    (folder / "call.wav").write_bytes(b"")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TOPIC_PREFIX": topic_prefix}
    assert cofi("topics", **env).returncode == 0
    await migrate(mariadb_url)
    # The tracker has applied one batch; the uploads topic holds another it has not read yet.
    engine = create_async_engine(mariadb_url)
    try:
        upload = FileUploaded(batch_id="tabled", file_name="a.wav", audio_uri="file:///a.wav")
        await tracker_for(engine).apply_events([upload])
    finally:
        await engine.dispose()
    first = await asyncio.to_thread(cofi, "submit", "queued", "--folder", str(folder), **env)
    assert first.returncode == 0, first.stderr

    for batch, where, with_db in (
        ("queued", f"{topic_prefix}.uploads holds uploads of it", True),
        ("queued", f"{topic_prefix}.uploads holds uploads of it", False),
        ("tabled", "the tracker's tables hold it", True),
    ):
        db = {"DATABASE_URL": mariadb_url} if with_db else {}
        again = await asyncio.to_thread(cofi, "submit", batch, "--folder", str(folder), **env, **db)
        assert again.returncode == 1, (batch, again.stderr)
        assert again.stderr == (
            f"cofi submit: batch {batch!r} was submitted before ({where}); a batch is "
            "submitted once: send new files as a new batch, failed ones again with cofi retry\n"
        )
        assert again.stdout == ""
    assert await _count(kafka_bootstrap, Topics(topic_prefix).uploads) == 2  # nothing more sent
