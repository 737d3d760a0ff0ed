"""Figures 5 and 6: each service's peak memory as batches go by, and CPU time per file."""

from collections.abc import Sequence

from bench.overhead import TimedBatch
from bench.report import Figure, Section
from bench.stats import projected_peak

NOT_PRODUCT = ("simulator",)
TARGET_BATCHES = 10


def cpu_section(batch: TimedBatch, scenario: str) -> Section:
    before, after, files = batch.before, batch.after, batch.files
    per_file = {
        name: (after.services[name].cpu_s - before.services[name].cpu_s) / files
        for name in after.services
    }
    product = sum(v for name, v in per_file.items() if name not in NOT_PRODUCT)
    shared = {
        f"{name} (shared)": (after.shared[name].cpu_s - before.shared[name].cpu_s) / files
        for name in after.shared
        if name in before.shared
    }
    section = Section(
        "6. CPU per file",
        [Figure.info(f"CPU per file: {name}", v * 1000, "ms") for name, v in per_file.items()]
        + [Figure.info("CPU per file: all services", product * 1000, "ms")]
        + [Figure.info(f"CPU per file: {name}", v * 1000, "ms") for name, v in shared.items()],
    )
    section.details = [
        f"CPU time (user + system, every thread, from /proc/<pid>/stat) each process used "
        f"during {scenario}, divided by its {files:,} files. The simulator is not part of the "
        f"product; it is shown because it shares the two cores. The broker and MariaDB serve "
        f"every run on this machine, so theirs includes other work "
        f"({batch.other_load:.0%} of the machine's CPU went to processes outside this run).",
    ]
    return section


def memory_section(peaks: Sequence[dict[str, int]], batch_files: int) -> Section:
    """`peaks[i]`: each service's peak RSS (KiB) after batch i+1 of `batch_files` files."""
    measured = len(peaks)
    figures: list[Figure] = []
    rows = ["| service | peak RSS after 1 batch | after " + f"{measured} batches | ratio |"]
    rows.append("|---|---:|---:|---:|")
    for name in peaks[0]:
        series = [float(p[name]) for p in peaks]
        first, last = series[0], series[-1]
        ratio = projected_peak(series, TARGET_BATCHES) / first
        figures.append(Figure.info(f"peak RSS, 1 batch: {name}", first / 1024, "MiB"))
        label = f"peak RSS ratio, {TARGET_BATCHES} batches / 1: {name}"
        if name in NOT_PRODUCT or measured < 2:  # one batch says nothing about growth
            figures.append(Figure.info(label, ratio, "ratio"))
        else:
            figures.append(Figure.at_most(label, ratio, "ratio", 1.2))
        rows.append(
            f"| {name} | {first / 1024:.0f} MiB | {last / 1024:.0f} MiB | {last / first:.3f} |"
        )
    figures.append(Figure.info("memory batches measured", measured, "batches"))
    section = Section("5. Memory", figures)
    projected = (
        ""
        if measured >= TARGET_BATCHES
        else f" Only {measured} batches fit in the time budget, so the ratio for "
        f"{TARGET_BATCHES} batches is projected: the growth per batch seen from batch 1 to "
        f"batch {measured}, continued linearly to batch {TARGET_BATCHES}."
    )
    section.details = [
        f"Peak RSS (VmHWM) of each service process after 1 batch of {batch_files:,} files and "
        f"after {measured} batches of {batch_files:,}, one after the other through the same "
        f"processes (instant models).{projected}",
        "",
        *rows,
    ]
    return section
