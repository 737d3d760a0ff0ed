"""One file's journey (read side): its row, every attempt in stage order, what came out."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dashboard.queries import as_datetime
from shared.pipeline import PIPELINE, index
from shared.redaction import redact_payload

FILE = (
    "SELECT file, batchId, ip, terminalState, failedStage, failedError, triageRoute, "
    "triageReason, audioUri, createdAt, finishedAt FROM fileDistribution "
    "WHERE batchId = :batch AND file = :file"
)
ATTEMPTS = (
    "SELECT stage_name, attempt, status, host, errorKind, error_message, startedAt, durationMs, "
    "output_payload FROM processing_logs WHERE batch_id = :batch AND call_id = :file ORDER BY id"
)
SEARCH = (
    "SELECT batchId, file, terminalState FROM fileDistribution WHERE file LIKE :pattern "
    "ESCAPE '!' ORDER BY updatedAt DESC, id DESC LIMIT :limit"
)


@dataclass(frozen=True)
class Attempt:
    stage: str
    attempt: int | None
    status: str | None
    host: str | None
    error_kind: str | None
    error: str | None
    started_at: datetime | None
    duration_ms: float | None
    output: Any  # the answer (parsed JSON), None for a failure or a payload past retention


@dataclass(frozen=True)
class FileJourney:
    batch_id: str
    file: str
    host: str | None
    terminal_state: str | None
    failed_stage: str | None
    failed_error: str | None
    triage_route: str | None
    triage_reason: str | None
    created_at: datetime | None
    finished_at: datetime | None
    attempts: list[Attempt]  # in stage order, then in the order they were made

    def outputs(self) -> dict[str, Any]:
        """Each stage's last answer."""
        return {a.stage: a.output for a in self.attempts if a.status == "success"}


def _parse(payload: str | None) -> Any:
    if payload is None:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload


def _stage_position(stage: str) -> int:
    try:
        return index(stage)
    except ValueError:
        return len(PIPELINE)  # a stage this build does not know goes last


async def file_journey(
    conn: AsyncConnection, batch_id: str, file: str, redact: frozenset[str]
) -> FileJourney | None:
    found = (await conn.execute(text(FILE), {"batch": batch_id, "file": file})).mappings().first()
    if found is None:
        return None
    rows = (await conn.execute(text(ATTEMPTS), {"batch": batch_id, "file": file})).mappings()
    attempts = [
        Attempt(
            stage=r["stage_name"],
            attempt=r["attempt"],
            status=r["status"],
            host=r["host"],
            error_kind=r["errorKind"],
            error=r["error_message"],
            started_at=as_datetime(r["startedAt"]),
            duration_ms=r["durationMs"],
            output=_parse(redact_payload(r["output_payload"], redact)),
        )
        for r in rows.all()
    ]
    attempts.sort(key=lambda a: _stage_position(a.stage))  # stable: attempts keep their order
    return FileJourney(
        batch_id=found["batchId"],
        file=found["file"],
        host=found["ip"],
        terminal_state=found["terminalState"],
        failed_stage=found["failedStage"],
        failed_error=found["failedError"],
        triage_route=found["triageRoute"],
        triage_reason=found["triageReason"],
        created_at=as_datetime(found["createdAt"]),
        finished_at=as_datetime(found["finishedAt"]),
        attempts=attempts,
    )


@dataclass(frozen=True)
class FileMatch:
    batch_id: str
    file: str
    terminal_state: str | None


def like_pattern(query: str) -> str:
    """`query` anywhere in the name, its `%` and `_` taken literally."""
    escaped = query.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


async def search_files(conn: AsyncConnection, query: str, limit: int = 50) -> list[FileMatch]:
    rows = await conn.execute(text(SEARCH), {"pattern": like_pattern(query), "limit": limit})
    return [FileMatch(r[0], r[1], r[2]) for r in rows.all()]
