"""`python -m bench.knob_ab KEY=VALUE ...`: one lever, A/B, on issue 21's headline figure.

Runs `bench.fleet_cost`'s measurement (an idle window, then a sigma-1.0 batch) on a fresh
pipeline without the knobs (A) and with them (B), alternately, `--rounds` times, so both
sides see the same load on a shared machine; prints each side's median and spread of idle
CPU per second, work per file and hosts per core (CPU time from /proc, not wall time).
"""

import argparse
import asyncio
import os
from collections.abc import Sequence

from bench.audio_cache import AUDIO_CACHE, cached_audio
from bench.fleet_cost import Repeat, measure_fleet, shortest_calls, spread_text
from bench.infra import new_run_id
from bench.run import say
from bench.stack import ROOT, Infra, cleanup_topics
from cli.audio import CallLengths
from cli.processes import exit_on_sigterm


def side_line(name: str, repeats: Sequence[Repeat]) -> str:
    per_core = (
        f"{spread_text([r.hosts_per_core for r in repeats], 0)} hosts per core, "
        if all(r.scale for r in repeats)
        else ""
    )
    services = sorted({n for r in repeats for n in r.batch_services_s if n != "simulator"})
    per_service = "; ".join(
        f"{n} idle "
        f"{spread_text([r.idle_services_per_s.get(n, 0) * 1000 for r in repeats], 1)} ms/s, "
        f"work {spread_text([r.service_work_per_file_s(n) * 1000 for r in repeats], 2)} ms per file"
        for n in services
    )
    return (
        f"{name}: idle {spread_text([r.idle_cpu_per_s * 1000 for r in repeats], 0)} ms/s, "
        f"work {spread_text([r.work_per_file_s * 1000 for r in repeats], 2)} ms per file, "
        f"{per_core}makespan {spread_text([r.makespan_s for r in repeats], 1)} s, "
        f"other load {spread_text([r.other_load * 100 for r in repeats], 0)} %\n  {per_service}"
    )


async def ab(args: argparse.Namespace) -> None:
    knobs = dict(kv.split("=", 1) for kv in args.knobs)
    base = dict(kv.split("=", 1) for kv in args.base)
    infra = Infra(
        bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        database_server_url=os.environ.get(
            "BENCH_DATABASE_URL", "mysql+asyncmy://cofi:cofi@127.0.0.1:3306/cofi"
        ),
    )
    paths = await asyncio.to_thread(cached_audio, AUDIO_CACHE, args.files, CallLengths(sigma=1.0))
    warmup = shortest_calls(paths, max(20, 2 * args.hosts))
    run_id = new_run_id()
    out = ROOT / "reports" / "artifacts" / f"ab-{run_id}"
    sides: dict[str, list[Repeat]] = {"A": [], "B": []}
    prefixes = []
    try:
        for n in range(args.rounds):
            for side, env in (("A", base), ("B", {**base, **knobs})):
                say(f"round {n + 1}, side {side}: {env or 'no knobs'}")
                prefix = f"ab{run_id}{side.lower()}{n}"
                prefixes.append(prefix)
                sides[side] += await measure_fleet(
                    infra,
                    prefix,
                    args.hosts,
                    paths,
                    warmup,
                    out / prefix,
                    env,
                    repeats=1,
                    idle_s=args.idle_s,
                    say=say,
                    scale=args.scale,
                )
    finally:
        await cleanup_topics(infra, prefixes)
    print(f"{args.hosts} hosts, {args.files} files per batch, {args.rounds} rounds, B: {knobs}")
    print(side_line("A", sides["A"]))
    print(side_line("B", sides["B"]))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.knob_ab", description=__doc__)
    p.add_argument("knobs", nargs="+", metavar="KEY=VALUE", help="side B's environment")
    p.add_argument("--base", action="append", default=[], metavar="KEY=VALUE", help="both sides")
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--files", type=int, default=120)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--idle-s", type=float, default=15.0)
    p.add_argument(
        "--scale", type=float, default=None, help="model latency scale (0: instant, a backlog)"
    )
    args = p.parse_args(argv)
    exit_on_sigterm()  # a stopped run stops its pipeline too
    asyncio.run(ab(args))


if __name__ == "__main__":
    main()
