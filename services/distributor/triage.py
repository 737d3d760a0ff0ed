"""The triage rule engine: rules are data, evaluated in order; the first match skips the file."""

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import FileContext, TriageDecision

Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "missing"]


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1)
    field: Literal["is_ivr", "language", "duration_s"]
    op: Op
    value: Any = None
    reason: str = ""


class RuleBook(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    rules: tuple[Rule, ...] = ()


def load_rules(path: Path) -> RuleBook:
    try:
        return RuleBook.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"triage rules {path}: {exc}") from exc


def matches(rule: Rule, context: FileContext) -> bool:
    actual = getattr(context, rule.field)
    if rule.op == "missing":
        return actual is None
    if actual is None:
        return False
    expected = rule.value
    match rule.op:
        case "eq":
            return bool(actual == expected)
        case "ne":
            return bool(actual != expected)
        case "lt":
            return bool(actual < expected)
        case "le":
            return bool(actual <= expected)
        case "gt":
            return bool(actual > expected)
        case "ge":
            return bool(actual >= expected)
        case "in":
            return actual in expected
        case "not_in":
            return actual not in expected
    return False


def decide(rules: RuleBook, context: FileContext) -> TriageDecision:
    for rule in rules.rules:
        if matches(rule, context):
            return TriageDecision(route="skip", rule=rule.name, reason=rule.reason or rule.name)
    return TriageDecision(route="stt", reason="no rule matched")
