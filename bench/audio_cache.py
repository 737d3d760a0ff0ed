"""Folders of synthetic call audio, generated once per distribution and reused by every run.

The files are exactly those `cli.audio.make_batch` writes for the same `CallLengths` (same
names, lengths, tones and seeds), written in parallel: 10,000 calls take a while on one core.
Files are written atomically, so an interrupted run leaves only whole files behind.
"""

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cli.audio import CallLengths, file_name, write_one

# The bench's cache of generated call audio, shared by its runs.
AUDIO_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench" / "audio"


def _write(args: tuple[Path, int, float]) -> None:
    folder, i, length_s = args
    write_one(folder, i, length_s, corrupt=0, short=0)


def cached_audio(root: Path, count: int, lengths: CallLengths | None = None) -> list[Path]:
    """`count` calls under `root/<lengths' label>`, writing only those a previous run did not."""
    lengths = lengths or CallLengths()
    folder = root / lengths.label()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / file_name(i) for i in range(count)]
    finished = [int(m.name.rsplit("-", 1)[1]) for m in folder.glob(".complete-*")]
    if any(n >= count for n in finished):
        return paths
    drawn = lengths.draw(count)
    missing = [(folder, i, drawn[i]) for i, p in enumerate(paths) if not p.exists()]
    if len(missing) <= 200:
        for job in missing:
            _write(job)
    else:
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(pool.map(_write, missing, chunksize=200))
    (folder / f".complete-{count}").touch()
    return paths
