"""When and how a file first got through each stage (`fileDistribution.stageResolutions`):
the values milestones.py orders to stamp a stage's final milestones. Pure.
"""

from datetime import datetime
from typing import Final

from shared.pipeline import PIPELINE

# How a file was first resolved for a stage (got through it one way or another), as the
# letter after its time; letters sort in rank, so a tie in time goes to the lower rank.
FINISHED: Final = "f"
SKIPPED: Final = "s"
FAILED: Final = "x"

# Per stage (PIPELINE order), the earliest event that resolved the file for it:
# `2026-01-15T09:00:00.010000f`, its time (naive UTC, always with microseconds, so strings
# sort as times do) and its kind. Empty means none yet; None at a position: not resolved.
Resolution = str
Resolutions = tuple[Resolution | None, ...]


def resolution(at: datetime, kind: str) -> Resolution:
    return at.isoformat(timespec="microseconds") + kind


def resolution_time(r: Resolution) -> datetime:
    return datetime.fromisoformat(r[:-1])


def merge_resolutions(a: Resolutions, b: Resolutions) -> Resolutions:
    """Per stage, the earlier resolution (the lower kind on a tie): a join, so any order of
    the same events gives the same value."""
    if not b or a == b:
        return a
    if not a:
        return b
    if len(a) < len(b):
        a, b = b, a
    out: list[Resolution | None] = []
    for i, x in enumerate(a):
        y = b[i] if i < len(b) else None
        out.append(x if y is None else y if x is None else min(x, y))
    return tuple(out)


_STAGES: Final = len(PIPELINE)


def finished_through(at: datetime, through: int, skipped: bool) -> Resolutions:
    """A file that finished the stage at `through` (and so every earlier one); routed to
    `done` by triage, it is skipped for every later stage."""
    done: Resolutions = (resolution(at, FINISHED),) * (through + 1)
    rest = _STAGES - through - 1
    if skipped:
        return done + (resolution(at, SKIPPED),) * rest
    return done + (None,) * rest


def failed_from(at: datetime, stage: int) -> Resolutions:
    """A file that failed at `stage`: failed for it and every later stage."""
    return (None,) * stage + (resolution(at, FAILED),) * (_STAGES - stage)


def encode_resolutions(res: Resolutions) -> str:
    """One field per stage, comma-separated; "" for none (NULL is a row the previous version
    wrote, whose resolutions are unknown)."""
    return ",".join(r or "" for r in res)


def decode_resolutions(text: str | None) -> Resolutions:
    if not text:
        return ()
    return tuple(field or None for field in text.split(","))
