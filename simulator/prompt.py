"""Turn a chat prompt into the JSON answer a well-behaved LLM would give (pure functions).

The product's prompt templates end with a line like `Return JSON with keys: summary, sentiment,
topics`; the simulator answers with exactly those keys, values chosen by key name and made
deterministic by hashing the user message, so retries and replays agree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

_KEYS_LINE = re.compile(r"JSON\s+with\s+(?:the\s+)?(?:following\s+)?keys?\s*:\s*(?P<keys>.*)", re.I)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
DEFAULT_KEYS = ("summary",)

_TOPICS = (
    "billing",
    "refund",
    "cancellation",
    "technical_issue",
    "account_access",
    "delivery",
    "upgrade",
    "complaint",
)
_FLAGS = ("pii_mentioned", "escalation_requested", "competitor_mentioned", "legal_threat")
_SENTIMENTS = ("positive", "neutral", "negative")
_DISPOSITIONS = ("resolved", "escalated", "callback")


def message_text(content: Any) -> str:
    """OpenAI content is a string or a list of parts; keep only the text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def parse_keys(text: str) -> list[str]:
    """Keys from the first `... JSON with keys: a, b and c.` line; [] if there is none."""
    for line in text.splitlines():
        match = _KEYS_LINE.search(line)
        if not match:
            continue
        raw = re.split(r",|\band\b|;", match.group("keys"))
        keys: list[str] = []
        for item in raw:
            token = item.strip().strip("`'\"*.[]{}() ")
            if _KEY.fullmatch(token) and token not in keys:
                keys.append(token)
        if keys:
            return keys
    return []


def user_text(messages: Sequence[dict[str, Any]]) -> str:
    """The last user message's text (the turn being answered), else the last message's."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return message_text(messages[-1].get("content")) if messages else ""


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _hash(text: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}\x00{text}".encode()).digest()[:8], "big")


_TAGGED = re.compile(r"<(transcript|call_analysis)>\n?(?P<body>.*?)\n?</\1>", re.S)


def _summary(text: str) -> str:
    # Summarise the substance, not the instructions: the content between the prompt's tags,
    # else the last non-instruction line (where older templates put the transcript).
    tagged = _TAGGED.search(text)
    if tagged:
        text = tagged.group("body")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not _KEYS_LINE.search(ln)]
    last = re.sub(r"^[A-Za-z ]{1,20}:\s*", "", lines[-1]) if lines else ""  # drop "Transcript:"
    words = last.split()[:12]
    return "Caller discussed: " + (" ".join(words) if words else "nothing audible") + "."


def fill_value(key: str, text: str) -> Any:
    name = key.lower()
    h = _hash(text, name)
    if name == "summary" or name.endswith("_summary"):
        return _summary(text)
    if "sentiment" in name:
        return _SENTIMENTS[h % len(_SENTIMENTS)]
    if "topic" in name:
        count = 1 + h % 3
        return [_TOPICS[(h // 7 + i * 3) % len(_TOPICS)] for i in range(count)]
    if name == "flags" or name.endswith("_flags"):
        count = h % 3  # most calls raise no or few flags
        return [_FLAGS[(h // 5 + i) % len(_FLAGS)] for i in range(count)]
    if name == "score" or name.endswith("_score"):
        return h % 101
    if "disposition" in name:
        return _DISPOSITIONS[h % len(_DISPOSITIONS)]
    return f"{key.replace('_', ' ')} for this call"


def build_content(messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON object the assistant answers, keyed as the prompt asked."""
    keys: list[str] = []
    for message in messages:
        keys = parse_keys(message_text(message.get("content")))
        if keys:
            break
    text = user_text(messages)
    return {key: fill_value(key, text) for key in (keys or DEFAULT_KEYS)}


def count_tokens(text: str) -> int:
    # Whitespace words are close enough to tokens for usage accounting in a simulator.
    return len(text.split())
