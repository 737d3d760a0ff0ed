"""Makespans on a given fleet, from per-stage work and capacity: pure arithmetic.

`ideal` is what a perfect streaming pipeline would take: the bottleneck stage busy from the
moment the first file can reach it until the last file leaves it, plus the time one file needs
through the other stages (filling and draining the pipe). `stage_after_stage` is the old
system's schedule: each stage runs over the whole batch, at full capacity, before the next.
"""

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StageLoad:
    stage: str
    files: int  # files that went through the stage
    latency_s: float  # model time of one file
    capacity: int  # files the stage serves at once across the fleet

    @property
    def busy_s(self) -> float:
        """Time the stage needs for all its files with every slot busy."""
        return self.files * self.latency_s / self.capacity


def bottleneck(loads: Sequence[StageLoad]) -> StageLoad:
    return max(loads, key=lambda load: load.busy_s)


def ideal_makespan(loads: Sequence[StageLoad]) -> float:
    neck = bottleneck(loads)
    path = sum(load.latency_s for load in loads if load.files > 0)
    return neck.busy_s + path - neck.latency_s


def stage_after_stage_makespan(loads: Sequence[StageLoad]) -> float:
    return sum(load.busy_s for load in loads)


# Heavy-tailed audio: per-file model times differ, so work is summed per file, not counted.


@dataclass(frozen=True)
class StageWork:
    stage: str
    work_s: float  # the model times of every file that went through the stage, summed
    capacity: int  # files the stage serves at once across the fleet

    @property
    def busy_s(self) -> float:
        """Time the stage needs with every slot busy all along (the work as a fluid)."""
        return self.work_s / self.capacity


def fluid_bound(works: Sequence[StageWork], longest_path_s: float) -> float:
    """No schedule finishes sooner: the busiest stage's work spread over all its slots, or
    the longest file's own time through every stage, whichever is larger."""
    return max([longest_path_s, *(w.busy_s for w in works)])


def file_stage_work(
    files: Sequence[tuple[Sequence[str], Sequence[float]]],
    capacity: dict[str, int],
) -> tuple[list[StageWork], float]:
    """Per-stage work and the longest path, from (stages a file went through, their times)."""
    work = dict.fromkeys(capacity, 0.0)
    longest = 0.0
    for stages, times in files:
        for stage, seconds in zip(stages, times, strict=True):
            work[stage] += seconds
        longest = max(longest, sum(times))
    return [StageWork(s, work[s], capacity[s]) for s in capacity], longest
