"""Files per minute over a batch's life, per stage and per GPU host, and failures by reason."""

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dashboard.charts import Series, fill_minutes
from shared.pipeline import PIPELINE


def _minute(dialect: str) -> str:
    """The minute in which an attempt ended, as the `v_stage_files_per_minute` view counts it."""
    if dialect == "mysql":
        ended = "startedAt + INTERVAL ROUND(COALESCE(durationMs, 0) * 1000) MICROSECOND"
        return f"CAST(DATE_FORMAT({ended}, '%Y-%m-%d %H:%i:00') AS DATETIME)"
    return (
        "strftime('%Y-%m-%d %H:%M:00', startedAt, "
        "printf('%+f seconds', COALESCE(durationMs, 0) / 1000.0))"
    )


def _finished_per_minute(dialect: str) -> str:
    minute = _minute(dialect)
    return (
        f"SELECT stage_name, host, {minute} AS minute, COUNT(*) AS files FROM processing_logs "
        f"WHERE batch_id = :batch AND status = 'success' GROUP BY stage_name, host, {minute}"
    )


FAILURE_REASONS = (
    "SELECT failedStage, failedError, COUNT(*) AS files FROM fileDistribution "
    "WHERE batchId = :batch AND terminalState = 'failed' GROUP BY failedStage, failedError"
)


@dataclass(frozen=True)
class Timeline:
    stages: list[Series]  # files that finished each stage, per minute
    hosts: list[Series]  # stages a GPU host finished, per minute


@dataclass(frozen=True)
class FailureReason:
    stage: str
    reason: str
    files: int


async def timeline(conn: AsyncConnection, batch_id: str) -> Timeline:
    rows = await conn.execute(text(_finished_per_minute(conn.dialect.name)), {"batch": batch_id})
    by_stage: dict[str, dict[datetime, int]] = {}
    by_host: dict[str, dict[datetime, int]] = {}
    for stage, host, minute, files in rows.all():
        at = minute if isinstance(minute, datetime) else datetime.fromisoformat(str(minute))
        per = by_stage.setdefault(stage, {})
        per[at] = per.get(at, 0) + int(files)
        if host:  # the LLM API is not a GPU host
            per_host = by_host.setdefault(host, {})
            per_host[at] = per_host.get(at, 0) + int(files)
    order = [row.name for row in PIPELINE]
    return Timeline(stages=fill_minutes(by_stage, order), hosts=fill_minutes(by_host))


# What differs between files failing for the same reason: hosts, ports, paths and numbers.
_VARYING = (
    (re.compile(r"https?://[^/\s:]+(:\d+)?"), "<host>"),
    (re.compile(r"file://\S+"), "<file>"),
    # Long numbers (ids, sizes, durations); short ones are kept: "HTTP 422" is the reason.
    (re.compile(r"\b\d+\.\d+\b|\b\d{4,}\b"), "N"),
)


def reason_of(error: str | None) -> str:
    reason = (error or "no reason recorded").strip()
    for pattern, placeholder in _VARYING:
        reason = pattern.sub(placeholder, reason)
    return reason[:300]


def group_reasons(rows: list[tuple[str | None, str | None, int]]) -> list[FailureReason]:
    """Failed files by stage and reason, most files first."""
    counts: Counter[tuple[str, str]] = Counter()
    for stage, error, files in rows:
        counts[(stage or "—", reason_of(error))] += int(files)
    return [
        FailureReason(stage, reason, n)
        for (stage, reason), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


async def failure_reasons(conn: AsyncConnection, batch_id: str) -> list[FailureReason]:
    rows = await conn.execute(text(FAILURE_REASONS), {"batch": batch_id})
    return group_reasons([(r[0], r[1], r[2]) for r in rows.all()])
