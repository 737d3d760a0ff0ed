"""Figure 1's run (issue 21): a pipeline per fleet size, projected, then checked at real speed."""

import asyncio
import statistics
from pathlib import Path

from bench.audio_cache import AUDIO_CACHE, cached_audio
from bench.fleet_check import FILL_S, files_to_submit, real_speed_check
from bench.fleet_cost import fleet_section, measure_fleet, shortest_calls
from bench.gpu_util import SPREADS
from bench.report import Section
from bench.run import BenchRun, say


def warmup_for(run: BenchRun, hosts: int) -> list[Path]:
    return shortest_calls(run.paths, max(len(run.warmup), 2 * hosts))


async def hosts_per_core(run: BenchRun) -> Section:
    """Issue 21's headline: a pipeline per fleet size, idle windows and sigma-1.0 batches."""
    args = run.args
    counts = [int(x) for x in args.hosts_counts.split(",") if x.strip()]
    lengths = next(lengths for _, lengths, _ in SPREADS if lengths.sigma == 1.0)
    by_hosts = {}
    for hosts in counts:
        # Batches in proportion to the fleet, so that filling and draining it stay a small
        # part of each batch.
        files = args.hosts_files * hosts
        paths = await asyncio.to_thread(cached_audio, AUDIO_CACHE, files, lengths)
        say(
            f"figure 1: {hosts} simulated hosts, {args.hosts_repeats} idle windows and batches "
            f"of {files:,} files (sigma 1.0)"
        )
        warmup = warmup_for(run, hosts)
        by_hosts[hosts] = await measure_fleet(
            run.infra,
            run.prefix(f"h{hosts}"),
            hosts,
            paths,
            warmup,
            run.artifacts / f"hosts-{hosts}",
            run.env,
            repeats=args.hosts_repeats,
            say=say,
        )
    checks = {}
    for hosts in [int(x) for x in args.hosts_check.split(",") if x.strip()]:
        if not by_hosts.get(hosts):
            continue
        rate = statistics.median(r.real_files_per_s for r in by_hosts[hosts])
        files = files_to_submit(rate, FILL_S, args.hosts_check_s)
        say(f"figure 1, checked: {hosts} hosts at real model speed, a batch of {files:,} files")
        checks[hosts] = await real_speed_check(
            run.infra,
            run.prefix(f"c{hosts}"),
            hosts,
            await asyncio.to_thread(cached_audio, AUDIO_CACHE, files, lengths),
            warmup_for(run, hosts),
            run.artifacts / f"hosts-check-{hosts}",
            run.env,
            window_s=args.hosts_check_s,
            say=say,
        )
    return fleet_section(by_hosts, run.env, checks)
