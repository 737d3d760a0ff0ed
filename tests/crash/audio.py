"""The crash suite's audio: quick copies of a few recordings, or heavy-tailed calls as
`cofi submit --synthetic` writes them."""

import shutil
from pathlib import Path

from cli.audio import CallLengths, file_name, write_corrupt, write_one, write_wav


def make_audio(folder: Path, count: int, corrupt: int = 0, short: int = 0) -> list[Path]:
    """`count` WAV files (`corrupt` undecodable, `short` under a second), written quickly:
    a few distinct recordings, copied, since the simulator's outputs hash the file's name."""
    folder.mkdir(parents=True, exist_ok=True)
    templates = folder / "_templates"
    templates.mkdir(exist_ok=True)
    normal = [templates / f"normal_{i}.wav" for i in range(8)]
    for i, path in enumerate(normal):
        if not path.exists():
            write_wav(path, 2.0, tone_hz=200 + 40 * i, seed=i)
    short_src = templates / "short.wav"
    if not short_src.exists():
        write_wav(short_src, 0.4, tone_hz=300, seed=99)
    paths = []
    for i in range(count):
        path = folder / f"call_{i:06d}.wav"
        if not path.exists():
            if i < corrupt:
                write_corrupt(path, seed=i)
            elif i < corrupt + short:
                shutil.copyfile(short_src, path)
            else:
                shutil.copyfile(normal[i % len(normal)], path)
        paths.append(path)
    return paths


def make_call_audio(
    folder: Path, count: int, corrupt: int, short: int, lengths: CallLengths
) -> list[Path]:
    """`count` calls of heavy-tailed `lengths` as `cofi submit --synthetic` writes them, kept
    under `folder` for the next run (a `.complete` marker once all are written)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / file_name(i) for i in range(count)]
    if not (folder / ".complete").exists():
        for i, length_s in enumerate(lengths.draw(count)):
            if not paths[i].exists():
                write_one(folder, i, length_s, corrupt, short)
        (folder / ".complete").touch()
    return paths
