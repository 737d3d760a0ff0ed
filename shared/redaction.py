"""Call content kept out of what people read: named JSON fields blanked at any depth.

`PAYLOAD_REDACT_FIELDS=transcript,messages` blanks STT's transcript and the LLM requests'
messages (which carry it). The tracker applies it before it writes a payload; the page and
`cofi export` apply it again when they show one, so a field named after the rows were written
is hidden too. Deterministic, so a replay writes the same text.
"""

import json
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

REDACTED = "[redacted]"


class RedactionSettings(BaseSettings):
    payload_redact_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="JSON fields blanked in processing_logs payloads before they are written, "
        "comma-separated; `transcript,messages` stores no transcript (nor the LLM prompts "
        "that carry it)",
    )

    @field_validator("payload_redact_fields", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def redact_fields(self) -> frozenset[str]:
        return fields_to_redact(self.payload_redact_fields)


# Fields that carry what another field names: the LLM's raw answer (kept when it does not
# parse) speaks about the transcript, so hiding the transcript hides it too.
CARRIED_BY: dict[str, frozenset[str]] = {"transcript": frozenset({"raw_answer"})}


def fields_to_redact(names: list[str] | frozenset[str]) -> frozenset[str]:
    named = frozenset(names)
    return named.union(*(CARRIED_BY.get(name, frozenset()) for name in named))


def redact_value(value: Any, fields: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if k in fields and v is not None else redact_value(v, fields)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_value(v, fields) for v in value]
    return value


def redact_payload(text: str | None, fields: frozenset[str]) -> str | None:
    """A stored payload (JSON text) with `fields` blanked at any depth."""
    if text is None or not fields or not any(f'"{name}"' in text for name in fields):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(redact_value(value, fields), ensure_ascii=False, separators=(",", ":"))
