"""Deterministic model outputs for each GPU stage (pure functions, no I/O).

Every value derives from sha256 of the file name (salted per stage and field), never from a random
generator, so a replayed or retried request gets the same answer: the product's effectively-once
tables can then be checked for exact equality after crash tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from simulator.audio import AudioInfo
from simulator.config import Stage

# Phrases of a typical support call, split into the words transcripts are drawn from.
_SCRIPT = (
    "hello thanks for calling about my account balance the payment was charged twice",
    "could you please check the refund status my card number order delivery was late",
    "I would like to cancel the subscription plan upgrade internet connection keeps dropping",
    "yes that is right no problem sure let me verify your details one moment please",
)
_VOCABULARY = tuple(word for phrase in _SCRIPT for word in phrase.split())


def unit(file_name: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) for (file_name, salt)."""
    digest = hashlib.sha256(f"{salt}\x00{file_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick_weighted(weights: Mapping[str, float], u: float) -> str:
    """Choose a key by cumulative weight (weights need not sum to 1)."""
    total = sum(weights.values())
    acc = 0.0
    for key, weight in weights.items():
        acc += weight / total
        if u < acc:
            return key
    return next(reversed(list(weights)))  # u within rounding error of 1.0


def denoise(file_name: str, audio_uri: str, audio: AudioInfo) -> dict[str, object]:
    return {
        # A real denoiser writes a new file; returning the input keeps the demo disk-free.
        "denoised_uri": audio_uri,
        "duration_s": round(audio.duration_s, 6),
        "snr_db": round(5.0 + 25.0 * unit(file_name, "denoise.snr"), 2),
    }


def ivr(file_name: str, ivr_rate: float) -> dict[str, object]:
    return {
        "is_ivr": unit(file_name, "ivr.flag") < ivr_rate,
        "confidence": round(0.6 + 0.4 * unit(file_name, "ivr.conf"), 3),
    }


def lid(file_name: str, languages: Mapping[str, float]) -> dict[str, object]:
    return {
        "language": pick_weighted(languages, unit(file_name, "lid.lang")),
        "confidence": round(0.7 + 0.3 * unit(file_name, "lid.conf"), 3),
    }


def stt(file_name: str, audio: AudioInfo) -> dict[str, object]:
    # Longer calls say more words, as a real transcript would (capped to stay log-friendly).
    count = max(4, min(40, round(audio.duration_s * 2.5) + int(4 * unit(file_name, "stt.n"))))
    start = int(unit(file_name, "stt.start") * len(_VOCABULARY))
    # Consecutive words of the script read like speech; wrapping keeps any start valid.
    words = [_VOCABULARY[(start + i) % len(_VOCABULARY)] for i in range(count)]
    transcript = " ".join(words) + f" [duration {audio.duration_s:.1f}s]"
    return {"transcript": transcript, "words": count}


def stage_output(
    stage: Stage,
    file_name: str,
    audio_uri: str,
    audio: AudioInfo,
    *,
    ivr_rate: float,
    languages: Mapping[str, float],
) -> dict[str, object]:
    if stage == "denoise":
        return denoise(file_name, audio_uri, audio)
    if stage == "ivr":
        return ivr(file_name, ivr_rate)
    if stage == "lid":
        return lid(file_name, languages)
    return stt(file_name, audio)


def wrong_types(output: Mapping[str, object]) -> dict[str, object]:
    """A buggy model server's answer: every number a 400-digit integer (it overflows a
    float), every string a number, every list or object a string."""
    garbled: dict[str, object] = {}
    for key, value in output.items():
        if isinstance(value, (bool, list, dict)):
            garbled[key] = "not-a-" + type(value).__name__
        elif isinstance(value, (int, float)):
            garbled[key] = 10**400
        else:
            garbled[key] = 12345
    return garbled


# Over the broker's default max.message.bytes (1 MiB) once it rides in a stage event.
OVERSIZE_CHARS = 1_200_000


def oversize(output: Mapping[str, object]) -> dict[str, object]:
    """An answer with an unbounded text: the transcript (or any first string) over 1 MiB."""
    grown = dict(output)
    key = (
        "transcript"
        if "transcript" in grown
        else next((k for k, v in grown.items() if isinstance(v, str)), "text")
    )
    grown[key] = ("word " * (OVERSIZE_CHARS // 5 + 1))[:OVERSIZE_CHARS]
    return grown
