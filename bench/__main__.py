"""`python -m bench` (`make bench`): every figure of issue 6, printed and written to reports/.

Order: the realistic-latency run (figure 2) first, then the bare Kafka chain on a quiet
machine, then the instant-model pipeline that serves figures 1, 3, 4, 5 and 6 in one set of
processes. Memory batches go on while the time budget allows (`--budget-s`).
"""

import argparse
import asyncio
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.audio_cache import cached_audio
from bench.gpu_util import gpu_utilization
from bench.infra import new_run_id
from bench.latency import light_load_latency
from bench.overhead import message_sizes, overhead_section, timed_batch
from bench.passthrough import chain_makespan
from bench.pipeline import (
    GPU_HOSTS,
    ROOT,
    BenchPipeline,
    Infra,
    cleanup_topics,
    running_pipeline,
)
from bench.report import Figure, RunInfo, Section, figure_table, write_reports
from bench.resources import TARGET_BATCHES, cpu_section, memory_section
from bench.tracker_rate import tracker_throughput

FIGURES = ("gpu", "overhead", "tracker", "latency", "memory")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--files", type=int, default=10_000, help="files per batch (default 10,000)")
    p.add_argument("--gpu-files", type=int, default=2_000, help="files of the GPU run")
    p.add_argument("--latency-files", type=int, default=300, help="files of the latency run")
    p.add_argument("--interval-ms", type=float, default=100, help="latency run: upload interval")
    p.add_argument(
        "--memory-batches", type=int, default=TARGET_BATCHES, help="batches for figure 5 (max)"
    )
    p.add_argument(
        "--budget-s", type=float, default=840, help="stop adding memory batches past this"
    )
    p.add_argument("--only", default=",".join(FIGURES), help=f"subset of {','.join(FIGURES)}")
    p.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="knob for every service"
    )
    p.add_argument("--note", default="", help="what changed since the last run (history)")
    p.add_argument("--out", type=Path, default=ROOT / "reports", help="report folder")
    p.add_argument(
        "--profile",
        metavar="SERVICE",
        help="run SERVICE (e.g. tracker, distributor, llm, gpu-127.0.2.2) under cProfile "
        "during the instant-model batch; stats go to reports/artifacts",
    )
    return p.parse_args(argv)


def say(text: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {text}", flush=True)


def show(section: Section) -> None:
    say(section.title)
    for line in figure_table(section.figures)[2:]:
        print("   ", line, flush=True)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def machine() -> str:
    load = os.getloadavg()[0]
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {mem_gib:.0f} GiB, Python {platform.python_version()}, "
        f"load {load:.1f} at start"
    )


async def bench(args: argparse.Namespace, run_id: str, started: float) -> list[Section]:
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(FIGURES)
    if unknown:
        raise SystemExit(f"unknown figures {sorted(unknown)}; choose from {', '.join(FIGURES)}")
    env = dict(kv.split("=", 1) for kv in args.env)
    infra = Infra(
        bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        database_server_url=os.environ.get(
            "BENCH_DATABASE_URL", "mysql+asyncmy://cofi:cofi@127.0.0.1:3306/cofi"
        ),
    )
    artifacts = args.out / "artifacts" / f"bench-{run_id}"
    say(f"run {run_id}; logs in {artifacts}")
    count = max(args.files, args.gpu_files, args.latency_files)
    say(f"audio: {count:,} WAV files in .cache/bench/audio (generated once)")
    paths = await asyncio.to_thread(cached_audio, ROOT / ".cache" / "bench" / "audio", count)
    warmup = paths[:20]
    sections: list[Section] = []
    prefixes: list[str] = []
    sizes: list[int] | None = None
    sizes_from = ""
    try:
        if "gpu" in only:
            prefix = f"bench{run_id}g"
            prefixes.append(prefix)
            say(f"figure 2: {args.gpu_files:,} files at realistic latencies")
            section = await gpu_utilization(
                infra, prefix, paths[: args.gpu_files], warmup, artifacts / "gpu", env
            )
            sections.append(section)
            show(section)
            sizes = await message_sizes(infra.bootstrap, prefix, GPU_HOSTS[0])
            sizes_from = "sampled from the GPU run's topics"
        chain_s: float | None = None
        if "overhead" in only and sizes is not None:
            chain_s = await passthrough(infra, run_id, sizes, args.files, artifacts, prefixes)
        if only & {"overhead", "tracker", "latency", "memory"}:
            sections += await instant_runs(
                args,
                infra,
                run_id,
                paths,
                warmup,
                artifacts,
                env,
                only,
                prefixes,
                started,
                chain_s,
                sizes,
                sizes_from,
            )
    finally:
        await cleanup_topics(infra, prefixes)
    return sections


async def passthrough(
    infra: Infra, run_id: str, sizes: list[int], files: int, artifacts: Path, prefixes: list[str]
) -> float:
    prefix = f"bench{run_id}p"
    prefixes.append(prefix)
    say(f"figure 1 floor: bare aiokafka chain, {files:,} records over {len(sizes) - 1} hops")
    chain_s = await chain_makespan(infra.bootstrap, prefix, sizes, files, artifacts / "chain", 4)
    say(f"    bare chain: {chain_s:.2f} s")
    return chain_s


async def instant_runs(
    args: argparse.Namespace,
    infra: Infra,
    run_id: str,
    paths: list[Path],
    warmup: list[Path],
    artifacts: Path,
    env: dict[str, str],
    only: set[str],
    prefixes: list[str],
    started: float,
    chain_s: float | None,
    sizes: list[int] | None,
    sizes_from: str,
) -> list[Section]:
    prefix = f"bench{run_id}i"
    prefixes.append(prefix)
    sections: list[Section] = []
    batch_paths = paths[: args.files]
    say("instant-model pipeline starting (figures 1, 3, 4, 5, 6)")
    async with running_pipeline(
        infra,
        prefix=prefix,
        latency_scale=0.0,
        warmup=warmup,
        log_dir=artifacts / "instant",
        extra_env=env,
    ) as pipeline:
        profile_out = None
        if args.profile:
            profile_out = await profile_service(pipeline, args.profile, artifacts, warmup, prefix)
        say(f"figure 1: {len(batch_paths):,} files, instant models")
        first = await timed_batch(pipeline, f"{prefix}-b1", batch_paths)
        say(f"    makespan {first.makespan_s:.1f} s, other load {first.other_load:.0%}")
        peaks = [{n: u.peak_rss_kib for n, u in first.after.services.items()}]
        makespans = [first.makespan_s]
        if "overhead" in only:
            if sizes is None:
                sizes = await message_sizes(infra.bootstrap, prefix, GPU_HOSTS[0])
                sizes_from = "sampled from this batch's topics"
                chain_s = await passthrough(infra, run_id, sizes, args.files, artifacts, prefixes)
            assert chain_s is not None
            sections.append(overhead_section(first, chain_s, sizes, sizes_from))
            show(sections[-1])
        if "tracker" in only:
            say("figure 3: a second tracker over the batch's topics")
            sections.append(
                await tracker_throughput(infra, prefix, GPU_HOSTS, run_id, len(batch_paths))
            )
            show(sections[-1])
        if "latency" in only:
            say(f"figure 4: {args.latency_files} files, one every {args.interval_ms:.0f} ms")
            sections.append(
                await light_load_latency(
                    pipeline,
                    f"{prefix}-latency",
                    paths[: args.latency_files],
                    args.interval_ms / 1000,
                )
            )
            show(sections[-1])
        if "memory" in only:
            reserve_s = 30  # stopping the pipeline, cleaning up, writing the report
            while len(peaks) < args.memory_batches:
                elapsed = time.monotonic() - started
                if elapsed + max(makespans) * 1.15 + reserve_s > args.budget_s:
                    say(f"figure 5: time budget reached after {len(peaks)} batches")
                    break
                n = len(peaks) + 1
                say(f"figure 5: batch {n} of {args.memory_batches}")
                batch = await timed_batch(pipeline, f"{prefix}-b{n}", batch_paths)
                makespans.append(batch.makespan_s)
                peaks.append({name: u.peak_rss_kib for name, u in batch.after.services.items()})
                say(f"    makespan {batch.makespan_s:.1f} s, other load {batch.other_load:.0%}")
            sections.append(memory_section(peaks, len(batch_paths)))
            if len(makespans) > 1:
                sections[-1].figures.append(
                    Figure.info(
                        "pipeline makespan spread over the memory batches",
                        (max(makespans) - min(makespans)) / min(makespans),
                        "ratio",
                    )
                )
                sections[-1].details.append("")
                sections[-1].details.append(
                    "Makespans of the batches (s), a measure of this machine's noise: "
                    + ", ".join(f"{m:.1f}" for m in makespans)
                )
            show(sections[-1])
        cpu = cpu_section(first, "the figure 1 batch")
        sections.append(cpu)
        show(cpu)
    if profile_out is not None:
        sections.append(profile_report(profile_out, args.profile))
    return sections


async def profile_service(
    pipeline: BenchPipeline, name: str, artifacts: Path, warmup: list[Path], prefix: str
) -> Path:
    """Restart one service under cProfile; its stats are written when it stops."""
    if name not in pipeline.group.processes:
        raise SystemExit(f"no service {name!r}; choose from {sorted(pipeline.group.processes)}")
    out = artifacts / f"profile-{name}.pstats"
    argv = pipeline.group.processes[name].argv
    await asyncio.to_thread(pipeline.group.kill, name, signal.SIGTERM)
    pipeline.group.start(name, [argv[0], "-m", "cProfile", "-o", str(out), *argv[1:]])
    await pipeline.submit(f"{prefix}-warmup2", warmup)
    await pipeline.wait_complete(f"{prefix}-warmup2", timeout_s=180)
    say(f"{name} restarted under cProfile -> {out}")
    return out


def profile_report(path: Path, name: str) -> Section:
    import io
    import pstats

    section = Section(f"Profile of {name}")
    if not path.exists():
        section.details = [f"No profile written at {path} (the service did not exit cleanly)."]
        return section
    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.sort_stats("tottime").print_stats(25)
    text = buffer.getvalue()
    (path.with_suffix(".txt")).write_text(text)
    section.details = ["```", *text.strip().splitlines()[-40:], "```"]
    return section


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # asyncmy logs every server warning (a replayed INSERT IGNORE, Alembic's DDL notes).
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
    started = time.monotonic()
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = machine()
    run_id = new_run_id()
    sections = asyncio.run(bench(args, run_id, started))
    run = RunInfo(
        run_id=run_id,
        started_at=started_at,
        commit=git_commit(),
        command="make bench" if not sys.argv[1:] else "python -m bench " + " ".join(sys.argv[1:]),
        machine=host,
        duration_s=time.monotonic() - started,
        note=args.note,
    )
    json_path = write_reports(args.out, run, sections, readme=ROOT / "README.md")
    say(f"report: {args.out / 'bench.md'}")
    for line in figure_table([f for s in sections for f in s.figures if f.target]):
        print(line)
    print(json_path)


if __name__ == "__main__":
    main()
