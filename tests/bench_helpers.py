"""Measurements the bench's figures are computed from, built by hand for their unit tests."""

from bench.model_chain import BROKER
from bench.overhead import TimedBatch
from bench.procfs import ProcessUsage
from bench.stack import Snapshot
from services.dashboard.summary import BatchSummary


def usage_of(cpu_s: float) -> ProcessUsage:
    return ProcessUsage(cpu_s, 0, 0)


def timed_batch_of(files: int, control_plane_s: float, broker_s: float | None) -> TimedBatch:
    """A batch whose control plane used `control_plane_s` (split over two processes) while
    the simulator used far more, which the figures must leave out."""
    before = Snapshot(
        0.0,
        {"distributor": usage_of(1.0), "tracker": usage_of(2.0), "simulator": usage_of(3.0)},
        {BROKER: usage_of(10.0)} if broker_s is not None else {},
        0.0,
        0.0,
    )
    after = Snapshot(
        60.0,
        {
            "distributor": usage_of(1.0 + control_plane_s / 2),
            "tracker": usage_of(2.0 + control_plane_s / 2),
            "simulator": usage_of(3.0 + 100.0),
        },
        {BROKER: usage_of(10.0 + broker_s)} if broker_s is not None else {},
        0.0,
        0.0,
    )
    summary = BatchSummary(
        batch_id="b",
        status="Complete",
        total_files=files,
        files_seen=files,
        distributed=files,
        terminal={},
        unfinished=0,
        stages=[],
    )
    return TimedBatch("b", files, 60.0, before, after, summary)
