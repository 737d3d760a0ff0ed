"""Prompt templates per stage (files the operator can edit), filled from a file's context."""

import json
from pathlib import Path
from string import Template
from typing import Any

from shared.events import FileContext
from shared.stages import LlmStage


def load_templates(folder: Path) -> dict[LlmStage, Template]:
    return {stage: Template((folder / f"{stage}.txt").read_text()) for stage in ("llm1", "llm2")}


def prompt_values(stage: LlmStage, context: FileContext) -> dict[str, Any]:
    if stage == "llm1":
        return {
            "language": context.language or "unknown",
            "duration_s": f"{context.duration_s or 0:.1f}",
            "transcript": context.transcript or "",
        }
    first = context.llm1 or {}
    return {
        "summary": first.get("summary", ""),
        "sentiment": first.get("sentiment", ""),
        "topics": json.dumps(first.get("topics", [])),
    }


def messages_for(
    template: Template, stage: LlmStage, context: FileContext, file_name: str
) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": template.safe_substitute(prompt_values(stage, context))},
        {"role": "user", "content": f"{file_name}\nAnswer with the JSON object only."},
    ]
