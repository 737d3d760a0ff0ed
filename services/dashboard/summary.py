"""A batch's progress and outcome, read from the tracker's tables (the dashboards' contract).

Counts what the files' own columns show (done flags, decisions, terminal states), not the
views: `cofi demo`, the end-to-end and crash tests and the benchmark wait on it until every
file of a batch has exactly one terminal state. SQL in `queries.py`, stages from
`shared/pipeline.py`.
"""

from typing import Any, Final

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.dashboard.queries import (
    SUMMARY_BATCH,
    SUMMARY_FAILED,
    SUMMARY_FILES,
    SUMMARY_TERMINAL,
)
from shared.pipeline import PIPELINE
from shared.status import FINISHED

# The distributor's host assignment comes first and every file goes through it: it is
# reported as `distributed`, not as a stage line.
ASSIGNMENT: Final = PIPELINE[0]


class StageLine(BaseModel):
    stage: str
    status: str
    done: int
    failed: int


class BatchSummary(BaseModel):
    batch_id: str
    status: str
    total_files: int | None
    files_seen: int
    distributed: int
    terminal: dict[str, int]
    unfinished: int
    stages: list[StageLine]

    @property
    def finished(self) -> bool:
        """Complete, and every file of the batch in exactly one terminal state."""
        return (
            self.status in FINISHED and self.total_files == self.files_seen and self.unfinished == 0
        )


async def batch_summary(engine: AsyncEngine, batch_id: str) -> BatchSummary | None:
    async with engine.connect() as conn:
        found = await _rows(conn, SUMMARY_BATCH, batch_id)
        if not found:
            return None
        status_row = found[0]
        totals = (await _rows(conn, SUMMARY_FILES, batch_id))[0]
        terminal = {
            r["state"]: int(r["files"]) for r in await _rows(conn, SUMMARY_TERMINAL, batch_id)
        }
        failed = {r["stage"]: int(r["files"]) for r in await _rows(conn, SUMMARY_FAILED, batch_id)}
    stages = [
        StageLine(
            stage=s.name,
            status=str(status_row[s.status_column]),
            done=int(totals[s.name] or 0),
            failed=failed.get(s.name, 0),
        )
        for s in PIPELINE
        if s is not ASSIGNMENT
    ]
    return BatchSummary(
        batch_id=batch_id,
        status=str(status_row["status"]),
        total_files=status_row["totalFiles"],
        files_seen=int(totals["files"] or 0),
        distributed=int(totals[ASSIGNMENT.name] or 0),
        terminal={str(k): v for k, v in terminal.items() if k is not None},
        unfinished=terminal.get(None, 0),
        stages=stages,
    )


async def _rows(conn: AsyncConnection, sql: str, batch_id: str) -> list[Any]:
    return list((await conn.execute(text(sql), {"batch": batch_id})).mappings().all())


def render(summary: BatchSummary) -> str:
    lines = [
        f"batch {summary.batch_id}: {summary.status}  files {summary.files_seen}"
        f"/{summary.total_files if summary.total_files is not None else '?'}  "
        + "  ".join(f"{k}={v}" for k, v in sorted(summary.terminal.items()))
        + f"  unfinished={summary.unfinished}",
        f"  {'stage':<8}{'status':<12}{'done':>7}{'failed':>8}",
    ]
    lines += [f"  {s.stage:<8}{s.status:<12}{s.done:>7}{s.failed:>8}" for s in summary.stages]
    return "\n".join(lines)
