"""IVR or conversation: key tones, speech presence and menu phrases combined (pure logic)."""

import re
import unicodedata
from dataclasses import dataclass

_NUMBERS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_NON_WORD = re.compile(r"[^a-z0-9*# ]+")
# Keys with little speech around them: a menu being navigated, not a conversation.
SPEECH_SHARE_WITH_KEYS = 0.5


def normalize(text: str) -> str:
    """Lower case, no accents or punctuation, number words as digits."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = _NON_WORD.sub(" ", plain).split()
    return " ".join(_NUMBERS.get(w, w) for w in words)


def matched_phrases(transcript: str, phrases: tuple[str, ...]) -> list[str]:
    text = f" {normalize(transcript)} "
    return [p for p in phrases if f" {normalize(p)} " in text]


@dataclass(frozen=True)
class IvrEvidence:
    dtmf: str
    speech_s: float
    window_s: float
    phrases: list[str]


def decide(evidence: IvrEvidence) -> tuple[bool, list[str]]:
    """IVR when a menu phrase is heard, or keys are pressed with little speech around them."""
    reasons: list[str] = []
    if evidence.phrases:
        reasons.append("menu phrase: " + ", ".join(evidence.phrases))
    share = evidence.speech_s / evidence.window_s if evidence.window_s > 0 else 0.0
    if evidence.dtmf and share < SPEECH_SHARE_WITH_KEYS:
        reasons.append(f"key tones {evidence.dtmf!r} with speech in {share:.0%} of the window")
    return bool(reasons), reasons
