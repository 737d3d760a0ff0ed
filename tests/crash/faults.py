"""What a scenario did to the running system, and the model calls that may be redone for it."""

from dataclasses import dataclass, field

from shared.pipeline import PIPELINE
from shared.stages import GPU_STAGES, LLM_STAGES

# The stages whose files the scenarios count (services/dashboard/summary.py reads them).
PROGRESS_STAGES = tuple(s.name for s in PIPELINE)
DISTRIBUTOR_COMMIT_EVERY = 8  # services/distributor/app.py broker_commit_every


@dataclass
class Fault:
    """Something a scenario did to the running system, and when (by the batch's progress)."""

    what: str
    at_progress: str
    seconds: float
    # Records the fault may make a stage redo: a killed consumer's in-flight bound (its
    # `max_in_flight`), or duplicates injected on purpose.
    windows: dict[str, int] = field(default_factory=dict)
    # Files already in a terminal state then: a fault after the last one is not mid-batch.
    terminal: int = 0
    # Model calls the simulator was serving at the fault, per stage (when a scenario asks).
    in_flight: dict[str, int] = field(default_factory=dict)
    # A step that may come after the batch has finished: a fault's end or progress observed
    # under it (a broker or the database back; only the fault itself must be mid-batch, and how
    # long a killed JVM's log recovery takes is no test of the pipeline), or a fault that
    # belongs after the batch (an upload after it completed).
    may_follow_batch: bool = False

    @property
    def in_flight_bound(self) -> int:
        return sum(self.windows.values())


def allowed_redundancy(faults: list[Fault]) -> dict[str, int]:
    """Model calls each stage may redo: the windows of every fault at it or upstream of it.
    GPU stages by name; `llm` for llm1 and llm2 together (the simulator counts them so)."""
    upto: dict[str, int] = {}
    total = 0
    # In flow order: a record redone at one stage may be redone by every later one too (its
    # first run's output was already published, so the next stage gets it twice).
    for stage in PROGRESS_STAGES:
        total += sum(f.windows.get(stage, 0) for f in faults)
        upto[stage] = total
    return {stage: upto[stage] for stage in GPU_STAGES} | {
        "llm": sum(upto[stage] for stage in LLM_STAGES)
    }
