"""Word error rate: word-level edit distance over the reference's length (pure)."""

import re
import unicodedata

_NUMBERS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def words(text: str) -> list[str]:
    """Lower case, no accents or punctuation, number words as digits (Whisper writes '5')."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return [_NUMBERS.get(w, w) for w in _NON_WORD.sub(" ", plain).replace("'", "").split()]


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref = words(reference)
    return edit_distance(ref, words(hypothesis)) / max(1, len(ref))


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    """Errors over all reference words (long calls weigh more than a mean of rates would)."""
    errors = sum(edit_distance(words(r), words(h)) for r, h in pairs)
    return errors / max(1, sum(len(words(r)) for r, _ in pairs))
