"""Figure 2: do the GPUs wait while work is queued? Measured makespan against the fluid bound.

Scenario (stated in the report): 4 simulated GPU hosts, capacity 4 per (host, stage) model
server, the simulator's model times for real call lengths (base + real-time factor x the call
seconds each model reads: `simulator/README.md`, from published figures), every time
multiplied by `--gpu-latency-scale` so a batch fits this machine; the LLM endpoint 250 ms per
call (scaled alike) with `LLM_MAX_CONCURRENCY` 32, so the GPUs, not the LLM, bind.

One pipeline runs three batches of the same size: constant call lengths (every call the
median, the figure of issue 6), then lognormal lengths at sigma 1.0 and 1.5 (issue 10). For
each, the fluid bound is the most any schedule must take: the busiest stage's model time over
its slots across the fleet, or the longest file's own path if that is larger. Utilization =
fluid bound / measured makespan (first upload -> batch Complete).
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sqlalchemy import text

from bench.infra import new_run_id
from bench.report import Figure, Section
from bench.schedule import StageWork, file_stage_work, fluid_bound
from bench.stack import (
    GPU_HOSTS,
    BenchPipeline,
    Infra,
    Snapshot,
    cpu_floor,
    running_pipeline,
)
from cli.audio import CallLengths
from shared.call_audio import read_call_header
from shared.pipeline import PIPELINE
from shared.stages import LLM_STAGES
from simulator.config import STAGES, SimConfig
from simulator.gpu import model_time_s

CAPACITY = 4
LLM_LATENCY_S = 0.250
LLM_CONCURRENCY = 32
# The simulated fleet (16 model slots) must not outrun this machine's 2 cores: at 0.03 the
# services, simulator and broker kept both cores nearly busy and every makespan sat on its
# CPU-bound floor, so the figure measured the machine, not the scheduling (bench/FINDINGS.md,
# "Heavy-tailed audio").
DEFAULT_SCALE = 0.1
# (figure name, call lengths, target): constant lengths keep issue 6's figure and target.
SPREADS: tuple[tuple[str, CallLengths, float | None], ...] = (
    ("GPU utilization, constant call length", CallLengths(sigma=0.0), 0.9),
    ("GPU utilization, heavy tail sigma 1.0", CallLengths(sigma=1.0), 0.95),
    ("GPU utilization, heavy tail sigma 1.5", CallLengths(sigma=1.5), None),
)
# Each model-calling stage's fileDistribution done flag, from the one pipeline graph.
FLAGS = {row.name: row.flag_column for row in PIPELINE if row.flag_column is not None}


def simulator_config() -> dict[str, object]:
    # The simulator's own defaults for the GPU stages (latency_s, rtf, window_s).
    return {"llm": {"latency_s": LLM_LATENCY_S}, "seed": 6}


@lru_cache(maxsize=8)
def _config(scale: float) -> SimConfig:
    return SimConfig.model_validate({**simulator_config(), "latency_scale": scale})


def model_times(call_s: float, scale: float) -> dict[str, float]:
    """One file's model time at each stage, by the simulator's own formula."""
    config = _config(scale)
    host = config.hosts[0]
    times: dict[str, float] = {s: model_time_s(config.gpu_knobs(host, s), call_s) for s in STAGES}
    llm = config.llm_knobs()
    llm_s = llm.latency_s * (scale if llm.latency_scale is None else llm.latency_scale)
    return {**times, **dict.fromkeys(LLM_STAGES, llm_s)}


@dataclass(frozen=True)
class BatchRun:
    name: str
    lengths: CallLengths
    target: float | None
    makespan_s: float
    works: list[StageWork]
    longest_s: float
    host_work: dict[str, float]  # GPU seconds per host
    cpu_floor_s: float
    cpu_text: str
    before: Snapshot
    after: Snapshot

    @property
    def bound_s(self) -> float:
        return fluid_bound(self.works, self.longest_s)

    @property
    def utilization(self) -> float:
        return self.bound_s / self.makespan_s

    @property
    def host_imbalance(self) -> float:
        seconds = list(self.host_work.values())
        return max(seconds) / (sum(seconds) / len(seconds)) if seconds else 1.0


async def file_rows(pipeline: BenchPipeline, batch_id: str) -> list[tuple[str, str, list[str]]]:
    """(file, host, stages it finished) of every file of the batch."""
    columns = ", ".join(FLAGS.values())
    query = text(f"SELECT file, ip, {columns} FROM fileDistribution WHERE batchId = :b")
    async with pipeline.engine.connect() as conn:
        rows = list(await conn.execute(query, {"b": batch_id}))
    return [
        (str(r[0]), str(r[1]), [s for s, flag in zip(FLAGS, r[2:], strict=True) if flag])
        for r in rows
    ]


async def run_batch(
    pipeline: BenchPipeline,
    prefix: str,
    name: str,
    lengths: CallLengths,
    target: float | None,
    paths: Sequence[Path],
    scale: float,
    hosts: Sequence[str] = GPU_HOSTS,
) -> BatchRun:
    call_s = {p.name: read_call_header(p).call_s for p in paths}
    batch_id = f"{prefix}-{new_run_id()}"
    before = pipeline.snapshot()
    started = time.monotonic()
    await pipeline.submit(batch_id, paths)
    makespan = await pipeline.wait_complete(batch_id, timeout_s=1800) - started
    after = pipeline.snapshot()
    floor, floor_text = cpu_floor(before, after, len(paths))
    per_file = []
    host_work = {h: 0.0 for h in hosts}
    for file, host, stages in await file_rows(pipeline, batch_id):
        times = model_times(call_s[file], scale)
        per_file.append((stages, [times[s] for s in stages]))
        host_work[host] = host_work.get(host, 0.0) + sum(times[s] for s in stages if s in STAGES)
    capacity: dict[str, int] = {s: len(hosts) * CAPACITY for s in STAGES}
    capacity.update(dict.fromkeys(LLM_STAGES, LLM_CONCURRENCY))
    works, longest = file_stage_work(per_file, capacity)
    return BatchRun(
        name, lengths, target, makespan, works, longest, host_work, floor, floor_text, before, after
    )


async def gpu_utilization(
    infra: Infra,
    prefix: str,
    batches: Sequence[tuple[str, CallLengths, float | None, Sequence[Path]]],
    warmup: Sequence[Path],
    log_dir: Path,
    extra_env: dict[str, str],
    latency_scale: float = DEFAULT_SCALE,
) -> Section:
    env = {"LLM_MAX_CONCURRENCY": str(LLM_CONCURRENCY), **extra_env}
    runs: list[BatchRun] = []
    async with running_pipeline(
        infra,
        prefix=prefix,
        latency_scale=latency_scale,
        warmup=warmup,
        log_dir=log_dir,
        capacity=CAPACITY,
        extra_env=env,
        simulator_config=simulator_config(),
    ) as pipeline:
        for name, lengths, target, paths in batches:
            runs.append(
                await run_batch(pipeline, prefix, name, lengths, target, paths, latency_scale)
            )
    return gpu_section(runs, latency_scale, extra_env)


def gpu_section(runs: Sequence[BatchRun], scale: float, extra_env: dict[str, str]) -> Section:
    figures = []
    for run in runs:
        label = f"{run.name} (fluid bound / measured makespan)"
        if run.target is None:
            figures.append(Figure.info(label, run.utilization, "ratio"))
        else:
            figures.append(Figure.at_least(label, run.utilization, "ratio", run.target))
    for run in runs:
        figures.append(Figure.info(f"{run.name}: makespan, measured", run.makespan_s, "s"))
        figures.append(Figure.info(f"{run.name}: fluid bound", run.bound_s, "s"))
    section = Section("2. GPU utilization", figures)
    median = model_times(runs[0].lengths.median_s, 1.0) if runs else {}
    section.details = [
        f"Scenario: {len(GPU_HOSTS)} simulated GPU hosts, capacity {CAPACITY} per (host, stage) "
        f"model server, model time = base + real-time factor x the call seconds the model reads "
        f"(simulator/README.md); at a real GPU's speed a median "
        f"{runs[0].lengths.median_s:g} s call takes "
        + ", ".join(f"{s} {median[s]:.2f} s" for s in STAGES)
        + f"; every time x{scale:g} here; LLM {LLM_LATENCY_S * scale * 1000:.0f} ms per call "
        f"with LLM_MAX_CONCURRENCY={LLM_CONCURRENCY}"
        + (f"; knobs {', '.join(f'{k}={v}' for k, v in extra_env.items())}" if extra_env else "")
        + "."
        if runs
        else "No batch ran."
    ]
    for run in runs:
        neck = max(run.works, key=lambda w: w.busy_s)
        serial = sum(w.busy_s for w in run.works)  # each stage over the batch, one by one
        lengths = run.lengths
        section.details.append(
            f"{run.name}: {sum(1 for _ in run.host_work)} hosts, call lengths lognormal median "
            f"{lengths.median_s:g} s, sigma {lengths.sigma:g}, cap {lengths.cap_s:g} s. Work "
            "per stage over its slots: "
            + ", ".join(f"{w.stage} {w.busy_s:.1f} s" for w in run.works)
            + f"; longest file {run.longest_s:.1f} s; fluid bound {run.bound_s:.1f} s "
            f"({neck.stage}); measured {run.makespan_s:.1f} s; utilization "
            f"{run.utilization:.2f}. GPU seconds per host max/mean {run.host_imbalance:.3f} "
            f"({', '.join(f'{h} {s:.0f} s' for h, s in run.host_work.items())}). Stage after "
            f"stage (the old system) {serial:.1f} s. {run.cpu_text}"
        )
    return section
