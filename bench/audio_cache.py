"""One folder of synthetic call audio, generated once and reused by every run.

The files are exactly those `cli.audio.make_batch` writes (same names, tones and seeds); they
are generated in parallel because 10,000 two-second WAVs take minutes on one core.
"""

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cli.audio import RATE, make_batch, write_wav

SECONDS = 2.0
# 16-bit mono PCM after a 44-byte header: a shorter file was cut off by an interrupted run.
WAV_BYTES = 44 + 2 * int(RATE * SECONDS)


def _write(args: tuple[Path, int]) -> None:
    folder, i = args
    # make_batch's own parameters for an ordinary (not corrupt, not short) file.
    write_wav(folder / f"call_{i:06d}.wav", SECONDS, tone_hz=200 + (i % 50) * 10, seed=i)


def cached_audio(folder: Path, count: int) -> list[Path]:
    """`count` WAV files in `folder`, writing only the ones a previous run did not finish."""
    folder.mkdir(parents=True, exist_ok=True)
    done_marker = folder / f".complete-{count}"
    paths = [folder / f"call_{i:06d}.wav" for i in range(count)]
    finished = [int(m.name.rsplit("-", 1)[1]) for m in folder.glob(".complete-*")]
    if any(n >= count for n in finished):
        return paths
    if count <= 200:
        make_batch(folder, count, seconds=SECONDS)
    else:
        missing = [
            (folder, i)
            for i, p in enumerate(paths)
            if not p.exists() or p.stat().st_size != WAV_BYTES
        ]
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(pool.map(_write, missing, chunksize=200))
    done_marker.touch()
    return paths
