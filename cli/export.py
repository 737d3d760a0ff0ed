"""`cofi export BATCH`: one row per file (outputs, answers, timings) as CSV or Parquet.

It streams: the file rows and the stages' answers come a page of files at a time, in
file-name order, and are joined in one pass (`cli/export_rows.py`) and written page by page,
so a batch of any size exports in the same memory. The file appears whole or not at all: it is
written beside its destination, flushed to disk, then renamed over it. What it writes is what
the tracker stored, so redaction (`PAYLOAD_REDACT_FIELDS`, applied again here in case it was set
after the rows were written) and retention (payloads emptied: `payloads_purged`) hold.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.export_rows import COLUMNS, AnswerRow, FileRow, join
from services.tracker.tables import batch_status, file_distribution, processing_logs
from shared.redaction import redact_payload

Format = Literal["csv", "parquet"]
CHUNK = 1000


class UnknownBatch(LookupError):
    def __init__(self, batch_id: str) -> None:
        super().__init__(
            f"no batch {batch_id!r} in the tracker's database (cofi status lists the batches it "
            "knows; a batch appears once the tracker has read its first file)"
        )


async def export_batch(
    engine: AsyncEngine,
    batch_id: str,
    destination: Path,
    fmt: Format,
    redact_fields: frozenset[str] = frozenset(),
) -> int:
    """Write the batch's export to `destination`; returns the number of files written."""
    async with engine.connect() as conn:
        known = await conn.execute(
            select(batch_status.c.id).where(batch_status.c.batchId == batch_id)
        )
        if known.first() is None:
            raise UnknownBatch(batch_id)
    rows = _rows(engine, batch_id, redact_fields)
    return await _write_atomically(rows, destination, fmt)


def _binary(column: Any, engine: AsyncEngine) -> Any:
    # Both cursors must sort exactly as Python compares strings (code points).
    return column.collate("utf8mb4_bin") if engine.dialect.name == "mysql" else column


def _file_rows(batch_id: str, engine: AsyncEngine, after: str | None) -> Select[Any]:
    fd = file_distribution.c
    name = _binary(fd.file, engine)
    query = (
        select(
            fd.file, fd.batchId, fd.ip, fd.terminalState, fd.failedStage, fd.failedError,
            fd.triageRoute, fd.triageReason, fd.createdAt, fd.finishedAt,
        )
        .where(fd.batchId == batch_id)
        .order_by(name)
        .limit(CHUNK)
    )  # fmt: skip
    return query if after is None else query.where(name > after)


def _answer_rows(batch_id: str, engine: AsyncEngine, after: str | None, last: str) -> Select[Any]:
    pl = processing_logs.c
    name = _binary(pl.call_id, engine)
    query = (
        select(pl.call_id, pl.stage_name, pl.output_payload, pl.durationMs)
        .where(pl.batch_id == batch_id, pl.status == "success", name <= last)
        .order_by(name, pl.id)
    )
    return query if after is None else query.where(name > after)


async def _rows(
    engine: AsyncEngine, batch_id: str, redact_fields: frozenset[str]
) -> AsyncIterator[list[dict[str, Any]]]:
    """A chunk of files at a time, by file name. Pages, not a streaming cursor: asyncmy reads
    a result set off the socket as fast as the server sends it, whatever the caller takes.
    One transaction, so every page reads the same snapshot (InnoDB's repeatable read)."""
    after: str | None = None
    async with engine.connect() as conn:
        while True:
            files = (await conn.execute(_file_rows(batch_id, engine, after))).all()
            if not files:
                return
            last = str(files[-1][0])
            answers = (await conn.execute(_answer_rows(batch_id, engine, after, last))).all()
            yield list(
                join(
                    (FileRow(*r) for r in files),
                    (
                        AnswerRow(r[0], r[1], redact_payload(r[2], redact_fields), r[3])
                        for r in answers
                    ),
                )
            )
            after = last


async def _write_atomically(
    chunks: AsyncIterator[list[dict[str, Any]]], destination: Path, fmt: Format
) -> int:
    destination = destination.resolve()
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = _CsvWriter(tmp) if fmt == "csv" else _ParquetWriter(tmp)
        written = 0
        try:
            async for chunk in chunks:
                writer.write(chunk)
                written += len(chunk)
        finally:
            writer.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, destination)
        return written
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise


class _CsvWriter:
    def __init__(self, path: Path) -> None:
        self._file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS)
        self._csv.writeheader()

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        self._csv.writerows(rows)

    def close(self) -> None:
        self._file.close()


class _ParquetWriter:
    """One row group per chunk; the schema is fixed up front so every group agrees."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        types = {
            "is_ivr": pa.bool_(),
            "payloads_purged": pa.bool_(),
            "created_at": pa.timestamp("us"),
            "finished_at": pa.timestamp("us"),
        }
        self._schema = pa.schema(
            [
                (name, types.get(name, pa.float64() if name.endswith("_ms") else pa.string()))
                for name in COLUMNS
            ]
        )
        self._writer = pq.ParquetWriter(str(path), self._schema, compression="zstd")

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._writer.write_table(self._pa.Table.from_pylist(rows, schema=self._schema))

    def close(self) -> None:
        self._writer.close()
