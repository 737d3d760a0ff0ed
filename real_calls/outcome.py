"""What the pipeline made of each real call, read back from the tracker's tables."""

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from real_calls.scripts import CallScript
from real_calls.wer import word_error_rate

_FILES = text(
    "SELECT file, terminalState, failedStage, failedError, triageRule "
    "FROM fileDistribution WHERE batchId = :b"
)
_ANSWERS = text(
    "SELECT call_id, stage_name, output_payload FROM processing_logs "
    "WHERE batch_id = :b AND status = 'success' ORDER BY attempt"
)


@dataclass
class CallOutcome:
    file: str
    script: CallScript
    state: str | None = None
    failed: str | None = None
    triage_rule: str | None = None
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_ivr(self) -> bool | None:
        value = self.answers.get("ivr", {}).get("is_ivr")
        return None if value is None else bool(value)

    @property
    def language(self) -> str | None:
        value = self.answers.get("lid", {}).get("language")
        return None if value is None else str(value)

    @property
    def transcript(self) -> str | None:
        value = self.answers.get("stt", {}).get("transcript")
        return None if value is None else str(value)

    @property
    def wer(self) -> float | None:
        hyp = self.transcript
        return None if hyp is None else word_error_rate(self.script.text, hyp)


async def read_outcomes(
    engine: AsyncEngine, batch_id: str, scripts: dict[str, CallScript]
) -> list[CallOutcome]:
    """One outcome per uploaded file (`scripts` maps file name to its script)."""
    outcomes = {name: CallOutcome(name, script) for name, script in scripts.items()}
    async with engine.connect() as conn:
        for row in (await conn.execute(_FILES, {"b": batch_id})).mappings():
            if (out := outcomes.get(row["file"])) is not None:
                out.state, out.triage_rule = row["terminalState"], row["triageRule"]
                if row["failedStage"]:
                    out.failed = f"{row['failedStage']}: {row['failedError']}"
        for row in (await conn.execute(_ANSWERS, {"b": batch_id})).mappings():
            out = outcomes.get(row["call_id"])
            if out is None or not row["output_payload"]:
                continue
            try:
                answer = json.loads(row["output_payload"])
            except ValueError:
                continue
            if isinstance(answer, dict):
                out.answers[str(row["stage_name"])] = answer
    return list(outcomes.values())
