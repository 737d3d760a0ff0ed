"""Synthetic call audio for demos, tests and the bench: real WAV files, and a few broken ones.

Call lengths are heavy-tailed, as in a call centre: lognormal with a median of a few minutes,
capped at an hour, drawn deterministically from a seed. The WAVs are 8 kHz mono 16-bit
telephony audio, time-compressed as `shared.call_audio` states (the one place the convention
lives): each file holds `length / TIME_COMPRESSION` seconds of audio and declares its length.
"""

import array
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from shared.call_audio import RATE, TIME_COMPRESSION, wav_bytes

DEFAULT_MEDIAN_S = 210.0  # 3.5 minutes
DEFAULT_SIGMA = 1.0
MAX_CALL_S = 3600.0  # the tail stops at an hour
SHORT_CALL_S = 0.4  # "short" files: under the triage rule's 1 second


@dataclass(frozen=True)
class CallLengths:
    """Lognormal call lengths in seconds: `median_s` and spread `sigma` (0 = all equal)."""

    median_s: float = DEFAULT_MEDIAN_S
    sigma: float = DEFAULT_SIGMA
    cap_s: float = MAX_CALL_S
    seed: int = 0

    def __post_init__(self) -> None:
        if self.median_s <= 0 or self.sigma < 0 or self.cap_s <= 0:
            raise ValueError(f"bad call lengths: {self}")

    def draw(self, count: int) -> list[float]:
        rng = random.Random(f"cofi-call-lengths:{self.seed}")
        mu = math.log(self.median_s)
        return [round(min(self.cap_s, rng.lognormvariate(mu, self.sigma)), 3) for _ in range(count)]

    def label(self) -> str:
        return f"median{self.median_s:g}-sigma{self.sigma:g}-cap{self.cap_s:g}-seed{self.seed}"


@lru_cache(maxsize=256)
def _second_of_tone(tone_hz: int, variant: int) -> bytes:
    """One second of a tone with a little noise; an integer tone repeats seamlessly each second."""
    rng = random.Random(tone_hz * 1000 + variant)
    samples = array.array(
        "h",
        (
            int(8000 * math.sin(2 * math.pi * tone_hz * i / RATE) + rng.randint(-800, 800))
            for i in range(RATE)
        ),
    )
    return samples.tobytes()


def pcm(audio_seconds: float, tone_hz: int, seed: int) -> bytes:
    frames = max(1, int(RATE * audio_seconds))
    second = _second_of_tone(tone_hz, seed % 8)
    whole, rest = divmod(frames * 2, len(second))
    return second * whole + second[:rest]


def _atomic_write(path: Path, data: bytes) -> None:
    # A run interrupted mid-write leaves no half file behind (the bench reuses its cache).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_wav(path: Path, seconds: float, tone_hz: float, seed: int) -> None:
    """A WAV holding `seconds` of real (uncompressed) audio and no declared length."""
    _atomic_write(path, wav_bytes(pcm(seconds, int(tone_hz), seed), None, 1.0))


def write_call(
    path: Path,
    call_seconds: float,
    tone_hz: int,
    seed: int,
    compression: float = TIME_COMPRESSION,
) -> None:
    """A time-compressed WAV of a `call_seconds` call (see shared.call_audio)."""
    audio = pcm(call_seconds / compression, tone_hz, seed)
    _atomic_write(path, wav_bytes(audio, call_seconds, compression))


def write_corrupt(path: Path, seed: int) -> None:
    path.write_bytes(random.Random(seed).randbytes(2048))


def tone_of(i: int) -> int:
    return 200 + (i % 50) * 10


def file_name(i: int) -> str:
    return f"call_{i:06d}.wav"


def write_one(folder: Path, i: int, length_s: float, corrupt: int, short: int) -> Path:
    """File `i` of a batch: corrupt if i < corrupt, short if i < corrupt + short, else a call."""
    path = folder / file_name(i)
    if i < corrupt:
        write_corrupt(path, seed=i)
    elif i < corrupt + short:
        write_wav(path, SHORT_CALL_S, tone_hz=tone_of(i), seed=i)
    else:
        write_call(path, length_s, tone_hz=tone_of(i), seed=i)
    return path


def make_batch(
    folder: Path,
    count: int,
    corrupt: int = 0,
    short: int = 0,
    lengths: CallLengths | None = None,
    on_file: Callable[[int], None] | None = None,
) -> list[Path]:
    """`count` calls of heavy-tailed lengths (`lengths`, default realistic): `corrupt` of them
    undecodable, `short` under a second long; `on_file(n)` after the n-th."""
    folder.mkdir(parents=True, exist_ok=True)
    drawn = (lengths or CallLengths()).draw(count)
    paths = []
    for i in range(count):
        paths.append(write_one(folder, i, drawn[i], corrupt, short))
        if on_file is not None:
            on_file(len(paths))
    return paths
