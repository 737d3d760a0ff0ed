"""A batch's progress and outcome, read from the tracker's tables (the dashboards' contract)."""

from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.stages import STAGES

STATUS_COLUMNS = {
    "denoise": "denoiseStatus",
    "ivr": "ivrStatus",
    "lid": "lidStatus",
    "triage": "triagingStatus",
    "stt": "sttStatus",
    "llm1": "llm1Status",
    "llm2": "llm2Status",
}
DONE_EXPR = {
    "denoise": "SUM(denoiseDone)",
    "ivr": "SUM(ivrDone)",
    "lid": "SUM(lidDone)",
    "triage": "SUM(CASE WHEN triageRoute IS NOT NULL THEN 1 ELSE 0 END)",
    "stt": "SUM(sttDone)",
    "llm1": "SUM(llm1Done)",
    "llm2": "SUM(llm2Done)",
}


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
            self.status in ("Complete", "Cancelled")
            and self.total_files == self.files_seen
            and self.unfinished == 0
        )


async def batch_summary(engine: AsyncEngine, batch_id: str) -> BatchSummary | None:
    async with engine.connect() as conn:
        status_row = (
            (
                await conn.execute(
                    text("SELECT * FROM batchStatus WHERE batchId = :b"), {"b": batch_id}
                )
            )
            .mappings()
            .first()
        )
        if status_row is None:
            return None
        sums = ", ".join(f"{expr} AS {stage}" for stage, expr in DONE_EXPR.items())
        totals = (
            (
                await conn.execute(
                    text(
                        "SELECT COUNT(*) AS files, "
                        "SUM(CASE WHEN ip IS NOT NULL THEN 1 ELSE 0 END) AS distributed, "
                        f"{sums} FROM fileDistribution WHERE batchId = :b"
                    ),
                    {"b": batch_id},
                )
            )
            .mappings()
            .one()
        )
        terminal = await _grouped(conn, "terminalState", batch_id)
        failed = await _grouped(conn, "failedStage", batch_id, "terminalState = 'failed'")
    stages = [
        StageLine(
            stage=s,
            status=str(status_row[STATUS_COLUMNS[s]]),
            done=int(totals[s] or 0),
            failed=failed.get(s, 0),
        )
        for s in STAGES
    ]
    return BatchSummary(
        batch_id=batch_id,
        status=str(status_row["status"]),
        total_files=status_row["totalFiles"],
        files_seen=int(totals["files"] or 0),
        distributed=int(totals["distributed"] or 0),
        terminal={k: v for k, v in terminal.items() if k != "None"},
        unfinished=terminal.get("None", 0),
        stages=stages,
    )


async def _grouped(conn: Any, column: str, batch_id: str, where: str = "1=1") -> dict[str, int]:
    rows = await conn.execute(
        text(
            f"SELECT {column} AS k, COUNT(*) AS n FROM fileDistribution "
            f"WHERE batchId = :b AND {where} GROUP BY {column}"
        ),
        {"b": batch_id},
    )
    return {str(r.k): int(r.n) for r in rows}


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
