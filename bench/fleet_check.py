"""Figure 1's check (issue 21's method, step 4): the control plane's CPU at real model speed.

The headline projects from batches at a compressed latency scale, where a file keeps the
consumers busy for a tenth of the time it does at a real GPU's speed; what costs per second of
busy time (polls while records are held) is then undercounted per file. So one pipeline runs
with every model at a real GPU's speed (latency scale 1.0) and a batch that keeps the fleet
busy well past the window: after `fill_s` (the fleet full), the control plane's CPU over
`window_s`, and the files finished in it. Hosts per core, measured = hosts / CPU seconds per
second; printed beside the projection of the same size.
"""

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.fleet_cost import SETTLE_S, control_plane_cpu, fleet_pipeline, services_cpu
from bench.infra import new_run_id
from bench.stack import BenchPipeline, Infra, other_load

WINDOW_S = 300.0
FILL_S = 60.0
# Files submitted per file the fleet is expected to finish by the window's end: it must
# still have work waiting when the window closes.
MARGIN = 1.5


@dataclass(frozen=True)
class Check:
    hosts: int
    window_s: float
    cpu_per_s: float  # the control plane's, during the window
    files_done: int  # files that reached an end during the window
    other_load: float
    services_per_s: Mapping[str, float] = field(default_factory=dict)  # CPU s/s per process

    @property
    def hosts_per_core(self) -> float:
        return self.hosts / self.cpu_per_s if self.cpu_per_s > 0 else math.inf

    @property
    def files_per_s(self) -> float:
        return self.files_done / self.window_s


def files_to_submit(real_files_per_s: float, fill_s: float, window_s: float) -> int:
    return math.ceil(real_files_per_s * (fill_s + window_s) * MARGIN)


async def files_ended(pipeline: BenchPipeline, batch_id: str) -> int:
    return sum((await pipeline.summary(batch_id)).terminal.values())


async def real_speed_check(
    infra: Infra,
    prefix: str,
    hosts: int,
    paths: Sequence[Path],
    warmup: Sequence[Path],
    log_dir: Path,
    env: dict[str, str],
    window_s: float = WINDOW_S,
    fill_s: float = FILL_S,
    say: Callable[[str], None] = print,
) -> Check:
    """`paths`: enough files to keep the fleet busy past the window (`files_to_submit`)."""
    async with fleet_pipeline(infra, prefix, hosts, 1.0, warmup, log_dir, env) as pipeline:
        await asyncio.sleep(SETTLE_S)
        batch_id = f"{prefix}-{new_run_id()}"
        await pipeline.submit(batch_id, paths)
        await asyncio.sleep(fill_s)
        ended_before, before = await files_ended(pipeline, batch_id), pipeline.snapshot()
        say(f"    real speed, {hosts} hosts: the fleet is full; a {window_s:.0f} s window")
        await asyncio.sleep(window_s)
        after, ended_after = pipeline.snapshot(), await files_ended(pipeline, batch_id)
        pipeline.check_alive()
        seconds = after.at - before.at
        check = Check(
            hosts=hosts,
            window_s=seconds,
            cpu_per_s=control_plane_cpu(before, after) / seconds,
            files_done=ended_after - ended_before,
            other_load=other_load(before, after),
            services_per_s={k: v / seconds for k, v in services_cpu(before, after).items()},
        )
        if ended_after >= len(paths):
            say("    (the batch ended inside the window: the fleet was not kept busy)")
        say(
            f"    real speed, {hosts} hosts: control plane {check.cpu_per_s * 1000:.0f} ms/s, "
            f"{check.files_per_s:.2f} files/s, {check.hosts_per_core:.0f} hosts per core "
            f"(other load {check.other_load:.0%})"
        )
        say(
            "      "
            + ", ".join(f"{n} {v * 1000:.1f}" for n, v in sorted(check.services_per_s.items()))
            + " ms/s"
        )
        return check
