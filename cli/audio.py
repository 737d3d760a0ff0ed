"""Synthetic call audio for demos and tests: real WAV files, and a few deliberately broken."""

import math
import random
import struct
import wave
from collections.abc import Callable
from pathlib import Path

RATE = 8000


def write_wav(path: Path, seconds: float, tone_hz: float, seed: int) -> None:
    rng = random.Random(seed)
    frames = int(RATE * seconds)
    samples = (
        int(8000 * math.sin(2 * math.pi * tone_hz * i / RATE) + rng.randint(-800, 800))
        for i in range(frames)
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(struct.pack(f"<{frames}h", *samples))


def write_corrupt(path: Path, seed: int) -> None:
    path.write_bytes(random.Random(seed).randbytes(2048))


def make_batch(
    folder: Path,
    count: int,
    corrupt: int = 0,
    short: int = 0,
    seconds: float = 2.0,
    on_file: Callable[[int], None] | None = None,
) -> list[Path]:
    """`count` files: `corrupt` of them undecodable, `short` under a second long;
    `on_file(n)` after the n-th."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"call_{i:06d}.wav"
        if i < corrupt:
            write_corrupt(path, seed=i)
        else:
            length = 0.4 if i < corrupt + short else seconds
            write_wav(path, length, tone_hz=200 + (i % 50) * 10, seed=i)
        paths.append(path)
        if on_file is not None:
            on_file(len(paths))
    return paths
