"""Figures 5 and 6: each service's peak memory as files go by, and CPU time per file."""

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import text

from bench.overhead import TimedBatch, timed_batch
from bench.report import Figure, Section
from bench.run import BenchRun, say
from bench.stack import BenchPipeline
from bench.stats import projected_at

NOT_PRODUCT = ("simulator",)
TARGET_BATCHES = 10

# (files finished so far across the measured batches, peak RSS in KiB per service)
Sample = tuple[int, dict[str, int]]


@dataclass
class MemorySampler:
    """Peak RSS of every service against the number of files finished, once a second."""

    pipeline: BenchPipeline
    interval_s: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    files_before: int = 0  # files of the batches already finished

    async def follow(self, batch_id: str) -> None:
        query = text(
            "SELECT COUNT(*) FROM fileDistribution WHERE batchId = :b AND terminalState IS NOT NULL"
        )
        while True:
            async with self.pipeline.engine.connect() as conn:
                finished = int((await conn.execute(query, {"b": batch_id})).scalar() or 0)
            self._add(self.files_before + finished)
            await asyncio.sleep(self.interval_s)

    def batch_finished(self, files: int) -> None:
        self.files_before += files
        self._add(self.files_before)

    def _add(self, files: int) -> None:
        peaks = {name: u.peak_rss_kib for name, u in self.pipeline.usage().items()}
        self.samples.append((files, peaks))


def services_cpu_per_file(batch: TimedBatch) -> dict[str, float]:
    """CPU seconds per file of each service; the GPU-stage processes (one per host) summed."""
    totals: dict[str, float] = {}
    for name, after in batch.after.services.items():
        used = after.cpu_s - batch.before.services[name].cpu_s
        service = "gpu_stage (all hosts)" if name.startswith("gpu-") else name
        totals[service] = totals.get(service, 0.0) + used
    return {name: used / batch.files for name, used in totals.items()}


def cpu_section(batch: TimedBatch, scenario: str) -> Section:
    before, after = batch.before, batch.after
    per_file = services_cpu_per_file(batch)
    product = sum(v for name, v in per_file.items() if name not in NOT_PRODUCT)
    shared = {
        f"{name} (shared)": (after.shared[name].cpu_s - before.shared[name].cpu_s) / batch.files
        for name in after.shared
        if name in before.shared
    }
    section = Section(
        "6. CPU per file",
        [Figure.info(f"CPU per file: {name}", v * 1000, "ms") for name, v in per_file.items()]
        + [Figure.info("CPU per file: all services", product * 1000, "ms")]
        + [Figure.info(f"CPU per file: {name}", v * 1000, "ms") for name, v in shared.items()],
    )
    per_process = ", ".join(
        f"{name} {(u.cpu_s - before.services[name].cpu_s) / batch.files * 1000:.2f}"
        for name, u in after.services.items()
    )
    section.details = [
        f"CPU time (user + system, every thread, from /proc/<pid>/stat) each service used "
        f"during {scenario}, divided by its {batch.files:,} files (ms per file, per process: "
        f"{per_process}). A GPU-stage process runs the four GPU stages of one host, so the "
        f"service's figure sums the hosts. The simulator is not part of the product; it is "
        f"shown because it shares the two cores. The broker and MariaDB serve every run on "
        f"this machine, so theirs includes other work ({batch.other_load:.0%} of the "
        f"machine's CPU went to processes outside this run).",
    ]
    return section


def memory_section(samples: Sequence[Sample], batch_files: int, batches: int) -> Section:
    """Peak RSS after one batch, and projected after TARGET_BATCHES batches of the same size."""
    target = TARGET_BATCHES * batch_files
    last_files = samples[-1][0]
    after_first = [peaks for files, peaks in samples if files <= batch_files][-1]
    figures: list[Figure] = []
    rows = [
        f"| service | peak RSS after {batch_files:,} files | after {last_files:,} | "
        f"growth per 1,000 files | projected after {target:,} | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    # With later batches measured, the first one is the warm-up (imports, pools, caches
    # filling): growth is fitted on the later ones; with one batch, on its second half.
    fit_from = batch_files if batches > 1 else batch_files / 2
    for name, first in after_first.items():
        points = [(float(files), float(peaks[name])) for files, peaks in samples]
        projected = projected_at(points, target, fit_from=fit_from)
        growth = (
            (projected - points[-1][1]) / (target - last_files) * 1000
            if target > last_files
            else (points[-1][1] - first) / max(1, last_files - batch_files) * 1000
        )
        ratio = projected / first
        label = f"peak RSS ratio, {TARGET_BATCHES} batches / 1: {name}"
        figures.append(Figure.info(f"peak RSS, 1 batch: {name}", first / 1024, "MiB"))
        if name in NOT_PRODUCT:
            figures.append(Figure.info(label, ratio, "ratio"))
        else:
            figures.append(Figure.at_most(label, ratio, "ratio", 1.2))
        rows.append(
            f"| {name} | {first / 1024:.1f} MiB | {points[-1][1] / 1024:.1f} MiB | "
            f"{growth:.0f} KiB | {projected / 1024:.1f} MiB | {ratio:.3f} |"
        )
    figures.append(Figure.info("memory batches measured", batches, "batches"))
    measured = batches >= TARGET_BATCHES
    how = (
        f"measured over {batches} batches of {batch_files:,} through the same processes"
        if measured
        else f"projected: only {batches} batch(es) of {batch_files:,} fit in the time budget, "
        f"so the growth of each peak per file, fitted (least squares) on the once-a-second "
        f"samples from file {int(fit_from):,} on (after the first batch's warm-up when there "
        f"are later batches), is continued to file {target:,}"
    )
    section = Section("5. Memory", figures)
    section.details = [
        f"Peak RSS (VmHWM from /proc) of each service process, sampled once a second against "
        f"the files finished, instant models. The ratio for {TARGET_BATCHES} batches is {how}.",
        "",
        *rows,
    ]
    return section


async def further_batches(
    run: BenchRun,
    pipeline: BenchPipeline,
    sampler: MemorySampler,
    batches: list[TimedBatch],
    count: int,
    figure: str,
) -> None:
    """Time batches through the same processes until `batches` holds `count`, while the
    time budget allows."""
    reserve_s = 30  # stopping the pipeline, cleaning up, writing the report
    while len(batches) < count:
        elapsed = time.monotonic() - run.started
        if elapsed + max(b.makespan_s for b in batches) * 1.15 + reserve_s > run.args.budget_s:
            say(f"{figure}: time budget reached after {len(batches)} batch(es)")
            return
        n = len(batches) + 1
        say(f"{figure}: batch {n} of {count}")
        prefix = pipeline.config.topic_prefix
        batch = await timed_batch(pipeline, f"{prefix}-b{n}", run.batch, sampler)
        batches.append(batch)
        say(f"    makespan {batch.makespan_s:.1f} s, other load {batch.other_load:.0%}")


async def memory_batches(
    run: BenchRun, pipeline: BenchPipeline, sampler: MemorySampler, batches: list[TimedBatch]
) -> Section:
    """Further batches through the same processes while the time budget allows."""
    await further_batches(run, pipeline, sampler, batches, run.args.memory_batches, "figure 5")
    makespans = [b.makespan_s for b in batches]
    run.artifacts.mkdir(parents=True, exist_ok=True)
    (run.artifacts / "memory_samples.json").write_text(json.dumps(sampler.samples))
    section = memory_section(sampler.samples, len(run.batch), len(makespans))
    if len(makespans) > 1:
        section.details += [
            "",
            "Makespans of the batches (s), a measure of this machine's noise: "
            + ", ".join(f"{m:.1f}" for m in makespans),
        ]
    return section
