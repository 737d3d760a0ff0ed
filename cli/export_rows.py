"""One row per file for `cofi export`: the tracker's file row joined with its stages' answers.

Pure: both inputs arrive sorted by file name (code-point order, the database's binary
collation), so the join is one pass and holds one file's answers at a time, whatever the
batch's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from shared.pipeline import PIPELINE, stages_of

# What an analyst reads, taken from the answer of the stage that produces it.
NAMED_OUTPUTS: Final[dict[str, tuple[str, str]]] = {
    "language": ("lid", "language"),
    "is_ivr": ("ivr", "is_ivr"),
    "transcript": ("stt", "transcript"),
}
LLM_STAGES: Final = tuple(row.name for row in stages_of("llm_stage"))
TIMED_STAGES: Final = tuple(row.name for row in PIPELINE if row.runner != "distributor")

COLUMNS: Final[tuple[str, ...]] = (
    "batch_id",
    "file",
    "host",
    "terminal_state",
    "failed_stage",
    "error",
    "triage_route",
    "triage_reason",
    *NAMED_OUTPUTS,
    *(f"{stage}_answer" for stage in LLM_STAGES),
    "created_at",
    "finished_at",
    *(f"{stage}_ms" for stage in TIMED_STAGES),
    "payloads_purged",
)


@dataclass(frozen=True, slots=True)
class FileRow:
    """The columns of `fileDistribution` the export reads."""

    file: str
    batch_id: str
    host: str | None
    terminal_state: str | None
    failed_stage: str | None
    error: str | None
    triage_route: str | None
    triage_reason: str | None
    created_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class AnswerRow:
    """A successful attempt of one stage on one file (`processing_logs`)."""

    file: str
    stage: str
    output_payload: str | None  # NULL once retention emptied it
    duration_ms: float | None


def join(files: Iterable[FileRow], answers: Iterable[AnswerRow]) -> Iterator[dict[str, Any]]:
    """Export rows, in file-name order; a stage answered twice (a retry) counts its last answer."""
    pending = iter(answers)
    ahead: AnswerRow | None = next(pending, None)
    for row in files:
        mine: dict[str, AnswerRow] = {}
        while ahead is not None and ahead.file < row.file:
            ahead = next(pending, None)  # answers of a file the batch no longer lists
        while ahead is not None and ahead.file == row.file:
            mine[ahead.stage] = ahead
            ahead = next(pending, None)
        yield export_row(row, mine)


def export_row(row: FileRow, answers: dict[str, AnswerRow]) -> dict[str, Any]:
    parsed = {stage: _parse(answer.output_payload) for stage, answer in answers.items()}
    out: dict[str, Any] = {
        "batch_id": row.batch_id,
        "file": row.file,
        "host": row.host,
        "terminal_state": row.terminal_state,
        "failed_stage": row.failed_stage,
        "error": row.error,
        "triage_route": row.triage_route,
        "triage_reason": row.triage_reason,
    }
    for column, (stage, key) in NAMED_OUTPUTS.items():
        answer = parsed.get(stage)
        out[column] = answer.get(key) if isinstance(answer, dict) else None
    for stage in LLM_STAGES:
        answer = parsed.get(stage)
        out[f"{stage}_answer"] = (
            None if answer is None else json.dumps(answer, ensure_ascii=False, sort_keys=True)
        )
    out["created_at"] = row.created_at
    out["finished_at"] = row.finished_at
    for stage in TIMED_STAGES:
        answer_row = answers.get(stage)
        out[f"{stage}_ms"] = None if answer_row is None else answer_row.duration_ms
    out["payloads_purged"] = any(a.output_payload is None for a in answers.values())
    return out


def _parse(payload: str | None) -> Any:
    if payload is None:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return {"raw": payload}
