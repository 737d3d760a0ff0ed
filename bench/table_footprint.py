"""Rows and bytes the tracker's tables hold per 10,000 files, measured on MariaDB.

    python -m bench.table_footprint DATABASE_URL [--out reports/capacity.md]

Run it on a database that holds finished batches only (e.g. after `cofi demo --files 2000`
with its own DATABASE_URL): it counts each table's rows and InnoDB's data and index bytes
(after ANALYZE TABLE, so the sizes are current) and scales them to 10,000 files.
"""

import argparse
import asyncio
import sys
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.tracker.tables import metadata

PER = 10_000


async def measure(url: str) -> list[tuple[str, int, int]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            sizes = []
            for table in metadata.sorted_tables:
                await conn.execute(text(f"ANALYZE TABLE `{table.name}`"))
                rows = await conn.scalar(text(f"SELECT COUNT(*) FROM `{table.name}`"))
                size = await conn.scalar(
                    text(
                        "SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
                        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t"
                    ),
                    {"t": table.name},
                )
                sizes.append((table.name, int(rows or 0), int(size or 0)))
            return sizes
    finally:
        await engine.dispose()


def render(sizes: list[tuple[str, int, int]]) -> str:
    files = next(rows for name, rows, _ in sizes if name == "fileDistribution")
    if not files:
        raise SystemExit("no files in fileDistribution: run a batch first")
    scale = PER / files
    lines = [
        "# Capacity: the tracker's tables per 10,000 files",
        "",
        f"Measured by `python -m bench.table_footprint` on MariaDB over {files:,} files of "
        "synthetic calls through the whole pipeline (simulator), scaled to 10,000. Payloads "
        "(transcripts, LLM answers) are most of the bytes: `PAYLOAD_RETENTION_DAYS` empties "
        "them, `BATCH_RETENTION_DAYS` deletes whole batches (docs/operations.md).",
        "",
        "| table | rows per 10,000 files | MiB per 10,000 files |",
        "|---|---:|---:|",
    ]
    total_rows = total_bytes = 0.0
    for name, rows, size in sizes:
        total_rows += rows * scale
        total_bytes += size * scale
        lines.append(f"| {name} | {rows * scale:,.0f} | {size * scale / 2**20:,.1f} |")
    lines.append(f"| **all** | {total_rows:,.0f} | {total_bytes / 2**20:,.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table_footprint", description=__doc__)
    parser.add_argument("database_url")
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args(argv)
    report = render(asyncio.run(measure(ns.database_url)))
    print(report, end="")
    if ns.out:
        ns.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
