"""`cofi export` against MariaDB: every file once, redaction kept, atomic, flat memory."""

import csv
import hashlib
import json
import tracemalloc
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cli.export import UnknownBatch, export_batch
from services.tracker.migrate import migrate
from services.tracker.tables import batch_status, file_distribution, processing_logs

T0 = datetime(2026, 12, 6, 12, 0, 0)


def _key(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


async def _seed(engine: AsyncEngine, batch: str, files: int) -> None:
    """A finished batch as the tracker leaves it: a file row and its stages' answers."""
    names = [f"call_{i:06d}.wav" for i in range(files)]
    answers: dict[str, Callable[[str], dict[str, object]]] = {
        "ivr": lambda n: {"is_ivr": False, "confidence": 0.6},
        "lid": lambda n: {"language": "en", "confidence": 0.9},
        "stt": lambda n: {"transcript": f"card 4111 1111 1111 1111 in {n} " + "words " * 40},
        "llm1": lambda n: {"summary": f"about {n}", "sentiment": "neutral", "topics": []},
    }
    async with engine.begin() as conn:
        await conn.execute(insert(batch_status), [{"batchId": batch, "status": "Complete"}])
        await conn.execute(
            insert(file_distribution),
            [
                {
                    "file": n, "batchId": batch, "ip": "10.0.0.1", "fileKey": _key(batch, n),
                    "terminalState": "done", "triageRoute": "stt", "createdAt": T0,
                    "finishedAt": T0,
                }
                for n in names
            ],
        )  # fmt: skip
        await conn.execute(
            insert(processing_logs),
            [
                {
                    "call_id": n, "batch_id": batch, "stage_name": stage, "status": "success",
                    "output_payload": json.dumps(make(n)), "attemptKey": _key(batch, n, stage),
                    "attempt": 1, "durationMs": 10.0,
                }
                for n in names
                for stage, make in answers.items()
            ],
        )  # fmt: skip


@pytest.fixture
async def engine(mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    await migrate(mariadb_url)
    engine = create_async_engine(mariadb_url)
    yield engine
    await engine.dispose()


async def _peak_bytes(engine: AsyncEngine, batch: str, out: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        written = await export_batch(engine, batch, out, "csv")
        return written, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_ten_thousand_files_export_in_the_memory_of_two_thousand(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await _seed(engine, "small", 2_000)
    await _seed(engine, "large", 10_000)
    small_rows, small_peak = await _peak_bytes(engine, "small", tmp_path / "small.csv")
    large_rows, large_peak = await _peak_bytes(engine, "large", tmp_path / "large.csv")
    assert (small_rows, large_rows) == (2_000, 10_000)
    # Five times the files, the same peak within noise: nothing grows with the batch.
    assert large_peak < 1.2 * small_peak, (small_peak, large_peak)
    with open(tmp_path / "large.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len({r["file"] for r in rows}) == 10_000
    assert rows[0]["language"] == "en" and rows[0]["transcript"].startswith("card 4111")


async def test_parquet_keeps_types_and_redaction_applies(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await _seed(engine, "b", 50)
    out = tmp_path / "b.parquet"
    assert await export_batch(engine, "b", out, "parquet", frozenset({"transcript"})) == 50
    table = pq.read_table(out)
    assert table.num_rows == 50
    row = table.slice(0, 1).to_pylist()[0]
    assert row["is_ivr"] is False and row["language"] == "en"
    assert row["transcript"] == "[redacted]"
    assert "4111" not in out.read_bytes().decode("latin-1")


async def test_an_unknown_batch_is_a_clear_error_and_writes_nothing(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    with pytest.raises(UnknownBatch, match="no batch 'nope'"):
        await export_batch(engine, "nope", tmp_path / "nope.csv", "csv")
    assert list(tmp_path.iterdir()) == []


async def test_a_failed_export_leaves_the_previous_file_whole(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await _seed(engine, "b", 20)
    out = tmp_path / "b.csv"
    out.write_text("the analyst's previous export\n")
    await engine.dispose()
    broken = create_async_engine("mysql+asyncmy://nobody:wrong@127.0.0.1:3306/none")
    with pytest.raises(Exception):  # noqa: B017 - any failure must keep the old file
        await export_batch(broken, "b", out, "csv")
    await broken.dispose()
    assert out.read_text() == "the analyst's previous export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["b.csv"]
