"""Figure 1 (issue 21): GPU hosts that one control-plane core feeds at real model speed.

The control plane is the distributor, the GPU stages, the LLM stage and the tracker; the
simulator stands in for the GPUs and the LLM API and is left out. For each fleet size (4 and
16 simulated hosts by default), one pipeline runs, warms up, then repeats, interleaved:

1. an idle window: every consumer joined, nothing to do; the control plane's CPU seconds per
   second (polls, heartbeats, commits, metadata);
2. a sigma-1.0 batch (figure 2's heavy-tailed call lengths) at a latency scale that keeps the
   simulated fleet's file rate the same at every size, so each size sees the same load;
   work per file = (CPU during the batch - idle rate x makespan) / files.

Projection to real model speed: the fleet kept busy at scale 1.0 finishes files x scale /
(its busiest stage's model time over its slots) files per second; the control plane then
needs idle + work per file x that rate CPU seconds per second, so one core feeds hosts /
that many hosts. The median over the repetitions is the
figure; the spread (lowest, highest) is shown beside it. The broker's and MariaDB's CPU per
host at real speed are projected the same way (they serve other runs on this machine too).
"""

import asyncio
import statistics
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.gpu_util import CAPACITY, LLM_CONCURRENCY, run_batch, simulator_config
from bench.overhead import cpu_used
from bench.report import Figure, Section
from bench.resources import NOT_PRODUCT
from bench.stack import (
    GPU_HOSTS,
    BenchPipeline,
    Infra,
    Snapshot,
    fleet_hosts,
    other_load,
    running_pipeline,
)
from cli.audio import CallLengths

if TYPE_CHECKING:
    from bench.fleet_check import Check  # it imports this module

HOST_COUNTS = (4, 16)
REPEATS = 3
IDLE_S = 15.0
SETTLE_S = 5.0  # after the warm-up: late commits and the tracker's last fold
# Figure 2's scale at its 4 hosts; more hosts run proportionally slower models (up to a real
# GPU's speed), so the simulated fleet finishes files at the same rate at every size.
BASE_SCALE = 0.1
TARGET_HOSTS_PER_CORE = 100.0
STRETCH_HOSTS_PER_CORE = 200.0
SIGMA = 1.0
FIGURE = "GPU hosts that one control-plane core feeds at real model speed"


def fleet_scale(hosts: int) -> float:
    return min(1.0, BASE_SCALE * hosts / len(GPU_HOSTS))


def shared_cpu(before: Snapshot, after: Snapshot) -> dict[str, float]:
    return {
        n: after.shared[n].cpu_s - before.shared[n].cpu_s
        for n in after.shared
        if n in before.shared
    }


def services_cpu(before: Snapshot, after: Snapshot) -> dict[str, float]:
    return {n: u.cpu_s - before.services[n].cpu_s for n, u in after.services.items()}


def control_plane_cpu(before: Snapshot, after: Snapshot) -> float:
    return cpu_used(
        {n: u.cpu_s for n, u in before.services.items()},
        {n: u.cpu_s for n, u in after.services.items()},
        NOT_PRODUCT,
    )


@dataclass(frozen=True)
class Repeat:
    """One idle window and the batch after it, at one fleet size."""

    hosts: int
    scale: float
    idle_cpu_per_s: float  # control plane, CPU seconds per second with nothing to do
    idle_shared_per_s: Mapping[str, float]  # broker, MariaDB (shared with other runs)
    files: int
    makespan_s: float
    batch_cpu_s: float  # control plane during the batch
    batch_shared_s: Mapping[str, float]
    utilization: float  # figure 2's ratio for this batch
    other_load: float  # share of the machine other work used during the batch
    # The busiest stage's model time over its slots across the fleet (figure 2's fluid bound
    # without the longest file's path), at the batch's scale; 0: unknown.
    neck_busy_s: float = 0.0
    # Per process (a GPU host's stages are one): idle CPU per second, CPU during the batch.
    idle_services_per_s: Mapping[str, float] = field(default_factory=dict)
    batch_services_s: Mapping[str, float] = field(default_factory=dict)

    def service_work_per_file_s(self, name: str) -> float:
        return work_per_file(
            self.batch_services_s.get(name, 0.0),
            self.idle_services_per_s.get(name, 0.0),
            self.makespan_s,
            self.files,
        )

    @property
    def work_per_file_s(self) -> float:
        return work_per_file(self.batch_cpu_s, self.idle_cpu_per_s, self.makespan_s, self.files)

    @property
    def real_files_per_s(self) -> float:
        """Files per second the same fleet finishes, kept busy, with every model time at a
        real GPU's: its busiest stage's pace (a batch's own makespan adds filling and
        draining the fleet, which a small batch on many hosts is mostly made of)."""
        busy_s = self.neck_busy_s or self.makespan_s
        return self.files * self.scale / busy_s

    @property
    def hosts_per_core(self) -> float:
        return hosts_per_core(
            self.hosts, self.idle_cpu_per_s, self.work_per_file_s, self.real_files_per_s
        )

    def shared_per_host(self, name: str) -> float:
        """CPU seconds per second per host the shared process needs at real speed."""
        idle = self.idle_shared_per_s.get(name, 0.0)
        work = work_per_file(self.batch_shared_s.get(name, 0.0), idle, self.makespan_s, self.files)
        return (idle + work * self.real_files_per_s) / self.hosts


def work_per_file(cpu_s: float, idle_per_s: float, makespan_s: float, files: int) -> float:
    """CPU seconds per file a batch adds over idling: never below zero (noise)."""
    if files <= 0:
        raise ValueError("no files to divide the CPU time by")
    return max(0.0, cpu_s - idle_per_s * makespan_s) / files


def hosts_per_core(
    hosts: int, idle_per_s: float, work_per_file_s: float, real_files_per_s: float
) -> float:
    """Hosts one core feeds: the fleet's hosts over the CPU seconds per second it needs."""
    needed = idle_per_s + work_per_file_s * real_files_per_s
    if needed <= 0:
        raise ValueError("the control plane used no CPU: nothing was measured")
    return hosts / needed


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, lowest, highest)."""
    return statistics.median(values), min(values), max(values)


def spread_text(values: Sequence[float], digits: int = 0) -> str:
    """ "median (lowest-highest)", as the reports write a spread."""
    middle, low, high = spread(values)
    return f"{middle:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def shortest_calls(paths: Sequence[Path], count: int) -> list[Path]:
    """A fleet's warm-up: enough files that every host's consumers have had a record, the
    shortest calls (a WAV's size grows with its length), since at 64 hosts the fleet runs at
    a real GPU's speed and one long call would outlast the warm-up's bound."""
    return sorted(paths, key=lambda p: p.stat().st_size)[:count]


def fleet_pipeline(
    infra: Infra,
    prefix: str,
    hosts: int,
    scale: float,
    warmup: Sequence[Path],
    log_dir: Path,
    env: dict[str, str],
) -> AbstractAsyncContextManager[BenchPipeline]:
    """A pipeline over `hosts` simulated GPU hosts at latency `scale`, warmed up."""
    return running_pipeline(
        infra,
        prefix=prefix,
        latency_scale=scale,
        warmup=warmup,
        log_dir=log_dir,
        capacity=CAPACITY,
        extra_env={"LLM_MAX_CONCURRENCY": str(LLM_CONCURRENCY), **env},
        simulator_config=simulator_config(),
        hosts=fleet_hosts(hosts),
    )


async def measure_fleet(
    infra: Infra,
    prefix: str,
    hosts: int,
    paths: Sequence[Path],
    warmup: Sequence[Path],
    log_dir: Path,
    env: dict[str, str],
    repeats: int = REPEATS,
    idle_s: float = IDLE_S,
    say: Callable[[str], None] = print,
    scale: float | None = None,
) -> list[Repeat]:
    """`scale`: the model times' latency scale (default `fleet_scale`; 0, instant models,
    measures work per file in a backlog, and no projection)."""
    names = fleet_hosts(hosts)
    scale = fleet_scale(hosts) if scale is None else scale
    results: list[Repeat] = []
    async with fleet_pipeline(infra, prefix, hosts, scale, warmup, log_dir, env) as pipeline:
        await asyncio.sleep(SETTLE_S)
        for n in range(repeats):
            before = pipeline.snapshot()
            await asyncio.sleep(idle_s)
            after = pipeline.snapshot()
            seconds = after.at - before.at
            idle = control_plane_cpu(before, after) / seconds
            idle_shared = {k: v / seconds for k, v in shared_cpu(before, after).items()}
            batch = await run_batch(
                pipeline,
                f"{prefix}-r{n}",
                FIGURE,
                CallLengths(sigma=SIGMA),
                None,
                paths,
                scale,
                names,
            )
            repeat = Repeat(
                hosts=hosts,
                scale=scale,
                idle_cpu_per_s=idle,
                idle_shared_per_s=idle_shared,
                files=len(paths),
                makespan_s=batch.makespan_s,
                neck_busy_s=max((w.busy_s for w in batch.works), default=0.0),
                batch_cpu_s=control_plane_cpu(batch.before, batch.after),
                batch_shared_s=shared_cpu(batch.before, batch.after),
                utilization=batch.utilization,
                other_load=other_load(batch.before, batch.after),
                idle_services_per_s={
                    k: v / seconds for k, v in services_cpu(before, after).items()
                },
                batch_services_s=services_cpu(batch.before, batch.after),
            )
            projected = f", {repeat.hosts_per_core:.0f} hosts per core" if scale else ""
            say(
                f"    {hosts} hosts, repeat {n + 1}: idle {idle * 1000:.0f} ms/s, work "
                f"{repeat.work_per_file_s * 1000:.2f} ms per file, makespan "
                f"{repeat.makespan_s:.1f} s{projected} (other load {repeat.other_load:.0%})"
            )
            results.append(repeat)
    return results


def fleet_section(
    by_hosts: Mapping[int, Sequence[Repeat]],
    env: Mapping[str, str],
    checks: Mapping[int, "Check"] | None = None,
) -> Section:
    figures: list[Figure] = []
    rows = [
        "| hosts | scale | hosts per core (median, spread) | idle ms/s | work ms per file | "
        "real files/s | broker ms/s per host | MariaDB ms/s per host | figure 2 ratio | "
        "other load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for hosts, repeats in sorted(by_hosts.items()):
        if not repeats:
            continue
        per_core, low, high = spread([r.hosts_per_core for r in repeats])
        per_core_text = spread_text([r.hosts_per_core for r in repeats])
        label = f"{FIGURE}, {hosts} simulated hosts (median of {len(repeats)})"
        figures.append(Figure.at_least(label, per_core, "hosts", TARGET_HOSTS_PER_CORE))
        figures.append(Figure.info(f"{FIGURE}, {hosts} hosts: lowest", low, "hosts"))
        figures.append(Figure.info(f"{FIGURE}, {hosts} hosts: highest", high, "hosts"))
        idle = spread([r.idle_cpu_per_s * 1000 for r in repeats])[0]
        work = spread([r.work_per_file_s * 1000 for r in repeats])[0]
        rate = spread([r.real_files_per_s for r in repeats])[0]
        figures.append(Figure.info(f"control plane idle CPU, {hosts} hosts", idle, "ms/s"))
        figures.append(Figure.info(f"control plane work per file, {hosts} hosts", work, "ms"))
        broker = spread([r.shared_per_host("kafka broker") * 1000 for r in repeats])[0]
        mariadb = spread([r.shared_per_host("mariadb") * 1000 for r in repeats])[0]
        figures.append(
            Figure.info(f"broker CPU per host at real speed, {hosts} hosts", broker, "ms/s")
        )
        utilization = spread([r.utilization for r in repeats])[0]
        load = spread([r.other_load for r in repeats])[0]
        rows.append(
            f"| {hosts} | {repeats[0].scale:g} | {per_core_text} | "
            f"{idle:.0f} | {work:.2f} | {rate:.2f} | {broker:.1f} | {mariadb:.1f} | "
            f"{utilization:.3f} | {load:.0%} |"
        )
    files = next((r[0].files for r in by_hosts.values() if r), 0)
    checked = []
    for hosts, check in sorted((checks or {}).items()):
        figures.append(
            Figure.at_least(
                f"{FIGURE}, {hosts} simulated hosts, measured at real speed",
                check.hosts_per_core,
                "hosts",
                TARGET_HOSTS_PER_CORE,
            )
        )
        checked.append(
            f"Measured at real model speed (latency scale 1.0), {hosts} hosts: the control "
            f"plane used {check.cpu_per_s * 1000:.0f} ms/s over {check.window_s:.0f} s while the "
            f"fleet, kept busy, ended {check.files_per_s:.2f} files/s: "
            f"**{check.hosts_per_core:.0f} hosts per core** (other load "
            f"{check.other_load:.0%}; `bench/fleet_check.py`). Per process, ms/s: "
            + ", ".join(
                f"{name} {cpu * 1000:.1f}" for name, cpu in per_process(check.services_per_s)
            )
            + "."
        )
    section = Section("1. GPU hosts per control-plane core", figures)
    per_service = [
        "",
        "Per process (median of the repeats; a GPU-stage process serves one host's stages):",
        "",
        "| hosts | process | idle ms/s | work ms per file |",
        "|---:|---|---:|---:|",
        *(
            f"| {hosts} | {name} | {idle:.1f} | {work:.2f} |"
            for hosts, repeats in sorted(by_hosts.items())
            for name, idle, work in service_rows(repeats)
        ),
    ]
    section.details = [
        f"Target >= {TARGET_HOSTS_PER_CORE:g} hosts per core, stretch "
        f"{STRETCH_HOSTS_PER_CORE:g}. Each fleet size: one pipeline (capacity {CAPACITY} per "
        f"host and stage, LLM_MAX_CONCURRENCY={LLM_CONCURRENCY}), then, interleaved, an idle "
        f"window of {IDLE_S:g} s and a batch of {files:,} files with call lengths lognormal "
        f"sigma {SIGMA:g}. Control plane: every service but the simulator. Work per file = "
        f"(CPU during the batch - idle CPU per second x makespan) / files; real files per "
        f"second = files x latency scale / the busiest stage's model time over its slots (the "
        f"fleet kept busy); hosts per core = hosts / (idle + work per "
        f"file x real files per second). The broker and MariaDB serve every run on this "
        f"machine, so their share includes other work."
        + (f" Knobs: {', '.join(f'{k}={v}' for k, v in env.items())}." if env else ""),
        "",
        *rows,
        *(["", *checked] if checked else []),
        *per_service,
    ]
    return section


def per_process(cpu_per_s: Mapping[str, float]) -> list[tuple[str, float]]:
    """The control plane's processes, the GPU-stage processes as their mean."""
    names = sorted(n for n in cpu_per_s if n != "simulator")
    gpu = [cpu_per_s[n] for n in names if n.startswith("gpu")]
    rows = [(n, cpu_per_s[n]) for n in names if not n.startswith("gpu")]
    return rows + ([(f"gpu_stage (mean of {len(gpu)})", sum(gpu) / len(gpu))] if gpu else [])


def service_rows(repeats: Sequence[Repeat]) -> list[tuple[str, float, float]]:
    """(process, idle ms/s, work ms per file) as `per_process` groups them, each the median
    over the repeats."""
    names = {n for r in repeats for n in r.batch_services_s}
    idle = [
        dict(per_process({n: r.idle_services_per_s.get(n, 0.0) for n in names})) for r in repeats
    ]
    work = [dict(per_process({n: r.service_work_per_file_s(n) for n in names})) for r in repeats]
    return [
        (
            label,
            spread([i[label] for i in idle])[0] * 1000,
            spread([w[label] for w in work])[0] * 1000,
        )
        for label, _ in per_process(dict.fromkeys(names, 0.0))
    ]
