"""`python -m bench` (`make bench`): every figure of issues 6 and 21, printed and written to
reports/.

Order: the GPU hosts per control-plane core (issue 21's headline, `bench.fleet_cost`) first,
then the realistic-latency run (figure 2), then the instant-model pipeline that
serves figures 1, 3, 4, 5 and 6 in one set of processes (figure 1's bare chain calls its
simulator between its first batch and figure 3). Memory batches go on while the time budget
allows (`--budget-s`).
"""

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.audio_cache import AUDIO_CACHE, cached_audio
from bench.fleet_check import WINDOW_S
from bench.fleet_cost import HOST_COUNTS, REPEATS
from bench.fleet_figure import hosts_per_core
from bench.gpu_util import DEFAULT_SCALE as GPU_SCALE
from bench.gpu_util import SPREADS, gpu_utilization
from bench.infra import new_run_id
from bench.latency import light_load_latency
from bench.model_chain import run_chain
from bench.overhead import Chain, cpu_per_file, message_sizes, overhead_section, timed_batch
from bench.peer_figure import PEER_FILES, PEER_RATE, chain_config, fair_peer
from bench.profiling import profile_section, restart_under_profiler
from bench.report import RunInfo, Section, figure_table, write_reports
from bench.resources import (
    TARGET_BATCHES,
    MemorySampler,
    cpu_section,
    further_batches,
    memory_batches,
)
from bench.run import BenchRun, git_commit, machine, say, show
from bench.saturation import MIN_BATCHES, saturation_section
from bench.stack import (
    GPU_HOSTS,
    ROOT,
    BenchPipeline,
    Infra,
    cleanup_topics,
    running_pipeline,
)
from bench.tracker_rate import tracker_throughput
from bench.tracker_scale import tracker_scale
from cli.processes import exit_on_sigterm

FIGURES = ("hosts", "gpu", "overhead", "peer", "tracker", "latency", "memory")
CHAIN_RUNS = 3
KAFKA_REQUESTS = "kafka-requests"  # where the instant runs' processes count their requests


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--files", type=int, default=10_000, help="files per batch (default 10,000)")
    p.add_argument("--gpu-files", type=int, default=2_000, help="files of the GPU run")
    p.add_argument(
        "--gpu-latency-scale",
        type=float,
        default=GPU_SCALE,
        help=f"GPU run: multiply every model time (default {GPU_SCALE:g}; 1 = a real GPU)",
    )
    p.add_argument(
        "--gpu-sigmas",
        default="",
        help="GPU run: only the batches of these call-length spreads (e.g. 1.0; default all)",
    )
    p.add_argument(
        "--hosts-files",
        type=int,
        default=50,
        help="hosts figure: files per simulated host in each batch (default %(default)s)",
    )
    p.add_argument(
        "--hosts-counts",
        default=",".join(map(str, HOST_COUNTS)),
        help="hosts figure: simulated fleet sizes (default %(default)s; 64 if the machine allows)",
    )
    p.add_argument(
        "--hosts-repeats", type=int, default=REPEATS, help="hosts figure: idle windows and batches"
    )
    p.add_argument(
        "--hosts-check",
        default="4",
        help="hosts figure: fleet sizes also measured at real model speed (default %(default)s; "
        "empty: none)",
    )
    p.add_argument(
        "--hosts-check-s",
        type=float,
        default=WINDOW_S,
        help="hosts figure: the real-speed window, seconds (default %(default)g)",
    )
    p.add_argument(
        "--peer-rate", type=float, default=PEER_RATE, help="fair peer: files/s (%(default)g)"
    )
    p.add_argument(
        "--peer-files", type=int, default=PEER_FILES, help="fair peer: files a batch (%(default)s)"
    )
    p.add_argument("--latency-files", type=int, default=300, help="files of the latency run")
    p.add_argument("--interval-ms", type=float, default=100, help="latency run: upload interval")
    p.add_argument(
        "--memory-batches", type=int, default=TARGET_BATCHES, help="batches for figure 5 (max)"
    )
    p.add_argument(
        "--budget-s", type=float, default=1200, help="stop adding memory batches past this"
    )
    p.add_argument("--only", default=",".join(FIGURES), help=f"subset of {','.join(FIGURES)}")
    p.add_argument(
        "--tracker-scale",
        type=int,
        nargs="?",
        const=100_000,
        metavar="FILES",
        help="also figure 7: tracker CPU per event, a FILES-file batch (default 100,000) over "
        "a --files batch (about 8 minutes of both cores at 100,000; not in make bench)",
    )
    p.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="knob for every service"
    )
    p.add_argument("--note", default="", help="what changed since the last run (history)")
    p.add_argument("--out", type=Path, default=ROOT / "reports", help="report folder")
    p.add_argument(
        "--profile",
        metavar="SERVICES",
        help="comma-separated services (tracker, distributor, llm, gpu-127.0.2.2, ...) to run "
        "under cProfile during the instant-model batches; stats go to reports/artifacts",
    )
    p.add_argument(
        "--pyinstrument-path",
        help="a folder pyinstrument was pip-installed into (--target); profiles then sample",
    )
    p.add_argument(
        "--profile-tracker",
        action="store_true",
        help="cProfile the second tracker of figure 3 (it runs in the bench's process)",
    )
    return p.parse_args(argv)


async def bench(args: argparse.Namespace, run_id: str, started: float) -> list[Section]:
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(FIGURES)
    if unknown:
        raise SystemExit(f"unknown figures {sorted(unknown)}; choose from {', '.join(FIGURES)}")
    env = dict(kv.split("=", 1) for kv in args.env)
    # The same knobs for the tracker figure 3 runs in this process.
    os.environ.update(env)
    infra = Infra(
        bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        database_server_url=os.environ.get(
            "BENCH_DATABASE_URL", "mysql+asyncmy://cofi:cofi@127.0.0.1:3306/cofi"
        ),
    )
    count = max(args.files, args.gpu_files, args.latency_files)
    say(
        f"run {run_id}; audio: {count:,} calls (lognormal lengths) in .cache/bench/audio "
        "(generated once per distribution)"
    )
    paths = await asyncio.to_thread(cached_audio, AUDIO_CACHE, count)
    run = BenchRun(args, infra, run_id, paths, env, only, started)
    say(f"logs in {run.artifacts}")
    sections: list[Section] = []
    try:
        if "hosts" in only:
            sections.append(await hosts_per_core(run))
            show(sections[-1])
        if "gpu" in only:
            say(
                f"figure 2: {len(SPREADS)} batches of {args.gpu_files:,} files at realistic "
                f"model times x{args.gpu_latency_scale:g} (constant, sigma 1.0, sigma 1.5)"
            )
            prefix = run.prefix("g")
            gpu_batches = []
            sigmas = {float(x) for x in args.gpu_sigmas.split(",") if x.strip()}
            for name, lengths, target in SPREADS:
                if sigmas and lengths.sigma not in sigmas:
                    continue
                gpu_paths = await asyncio.to_thread(
                    cached_audio, AUDIO_CACHE, args.gpu_files, lengths
                )
                gpu_batches.append((name, lengths, target, gpu_paths))
            sections.append(
                await gpu_utilization(
                    infra,
                    prefix,
                    gpu_batches,
                    run.warmup,
                    run.artifacts / "gpu",
                    env,
                    latency_scale=args.gpu_latency_scale,
                )
            )
            show(sections[-1])
        if only & {"overhead", "peer", "tracker", "latency", "memory"}:
            sections += await instant_runs(run)
        if args.tracker_scale:
            sections.append(await tracker_scale(infra, args.tracker_scale, args.files, say))
            show(sections[-1])
    finally:
        await cleanup_topics(infra, run.prefixes)
    return sections


async def bare_chain(run: BenchRun, pipeline: BenchPipeline, sizes: dict[str, int]) -> Chain:
    """The bare chain with the pipeline's model calls, on its simulator, three times."""
    files = len(run.batch)
    say(f"figure 1: bare chain with the same model calls, {files:,} files, {CHAIN_RUNS} runs")
    simulator_pid = pipeline.group.processes["simulator"].popen.pid
    # The pipeline has no work while the chain runs: what its services use meanwhile is their
    # cost per second of waiting (polls, heartbeats, commits).
    idle_before, idle_from = pipeline.usage(), time.monotonic()
    runs = []
    for attempt in range(CHAIN_RUNS):
        config = chain_config(run, run.prefix(f"c{attempt}"), sizes)
        result = await run_chain(
            config,
            run.batch,
            run.warmup,
            run.artifacts / "chain",
            simulator_pid,
            count_requests=run.artifacts / KAFKA_REQUESTS,
        )
        runs.append(result)
        say(
            f"    bare chain: {result.makespan_s:.2f} s, "
            f"{result.total_cpu_s / files * 1000:.2f} ms CPU per file"
        )
    idle_after, idle_s = pipeline.usage(), time.monotonic() - idle_from
    idle_cpu = cpu_per_file(
        {n: u.cpu_s for n, u in idle_before.items()},
        {n: u.cpu_s for n, u in idle_after.items()},
        1,
        exclude=("simulator",),
    )
    return Chain(runs, sizes, "sampled from the figure 1 batch's topics", idle_cpu / idle_s)


async def instant_runs(run: BenchRun) -> list[Section]:
    """Figures 1, 3, 4, 5 and 6 on one pipeline with instant models."""
    args, prefix = run.args, run.prefix("i")
    sections: list[Section] = []
    say("instant-model pipeline starting (figures 1, 3, 4, 5, 6)")
    async with running_pipeline(
        run.infra,
        prefix=prefix,
        latency_scale=0.0,
        warmup=run.warmup,
        log_dir=run.artifacts / "instant",
        extra_env=run.env,
        count_requests=run.artifacts / KAFKA_REQUESTS,
    ) as pipeline:
        profiles: dict[str, Path] = {}
        if args.profile:
            names = [n.strip() for n in args.profile.split(",") if n.strip()]
            profiles = await restart_under_profiler(
                pipeline, names, run.artifacts, run.warmup, f"{prefix}-warmup2"
            )
            say(f"profiling {', '.join(names)} -> {run.artifacts}")
        say(f"figure 1: {len(run.batch):,} files, instant models")
        sampler = MemorySampler(pipeline)
        first = await timed_batch(pipeline, f"{prefix}-b1", run.batch, sampler)
        say(f"    makespan {first.makespan_s:.1f} s, other load {first.other_load:.0%}")
        batches, chain = [first], None
        if "overhead" in run.only:
            sizes = await message_sizes(run.infra.bootstrap, prefix, GPU_HOSTS[0])
            chain = await bare_chain(run, pipeline, sizes)
            sections.append(overhead_section(first, chain))
            show(sections[-1])
        if "peer" in run.only:
            sections.append(await fair_peer(run, pipeline))
            show(sections[-1])
        if "tracker" in run.only:
            say("figure 3: a second tracker over the batch's topics")
            profile_to = run.artifacts / "profile-fig3.txt" if args.profile_tracker else None
            sections.append(
                await tracker_throughput(
                    run.infra, prefix, GPU_HOSTS, run.run_id, len(run.batch), profile_to
                )
            )
            show(sections[-1])
            if profile_to is not None:
                profiles["tracker (figure 3, in the bench process)"] = profile_to
        if "latency" in run.only:
            say(f"figure 4: {args.latency_files} files, one every {args.interval_ms:.0f} ms")
            latency_paths = run.paths[: args.latency_files]
            sections.append(
                await light_load_latency(
                    pipeline, f"{prefix}-latency", latency_paths, args.interval_ms / 1000
                )
            )
            show(sections[-1])
        if "memory" in run.only:
            sections.append(await memory_batches(run, pipeline, sampler, batches))
            show(sections[-1])
        if "overhead" in run.only:
            await further_batches(run, pipeline, sampler, batches, MIN_BATCHES, "saturation")
            sections.append(saturation_section(batches, chain))
            show(sections[-1])
        sections.append(cpu_section(first, "the figure 1 batch"))
        show(sections[-1])
    if profiles:
        sections.append(profile_section(profiles))
    return sections


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.pyinstrument_path:
        # Read by bench.service_profile in the profiled services and by bench.profiling here.
        os.environ["BENCH_PYINSTRUMENT_PATH"] = str(Path(args.pyinstrument_path).resolve())
    # asyncmy logs every server warning (a replayed INSERT IGNORE, Alembic's DDL notes).
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
    started = time.monotonic()
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = machine()
    run_id = new_run_id()
    exit_on_sigterm()
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
    # Only the project's own report is the README's "latest figures"; trial runs elsewhere are not.
    readme = ROOT / "README.md" if args.out.resolve() == (ROOT / "reports").resolve() else None
    json_path = write_reports(args.out, run, sections, readme=readme)
    say(f"report: {args.out / 'bench.md'}")
    for line in figure_table([f for s in sections for f in s.figures if f.target]):
        print(line)
    print(json_path)


if __name__ == "__main__":
    main()
