"""`make gameday`: a seeded game day, then its report.

    python -m tests.gameday [--seed N] [--duration-min M] [--bound-s S]
        [--broker private|shared|cluster] [--database private|shared]

Batches back to back for M minutes (default 60) while a fault drawn from the catalogue
(tests/gameday/catalogue.py) starts every 1-3 minutes; then every batch must finish within S
seconds (default 300) of the last fault clearing. Writes `reports/gameday-<time>.md` and its
PNG chart, copied to `reports/gameday-latest.*`, and prints the report's path last. Exit
status 0 only if every invariant held. The same seed draws the same batches and faults.
"""

import argparse
import asyncio
import logging
import random
import sys

from cli.processes import exit_on_sigterm
from tests.gameday.run import GameDaySettings, run_game_day


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.gameday", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="default: drawn, and printed")
    parser.add_argument("--duration-min", type=float, default=60.0)
    parser.add_argument("--bound-s", type=float, default=300.0)
    parser.add_argument("--broker", choices=("private", "shared", "cluster"), default="private")
    parser.add_argument("--database", choices=("private", "shared"), default="private")
    parser.add_argument("--only", default="", help="draw only these kinds (comma-separated)")
    parser.add_argument(
        "--fault-gap-s", type=float, nargs=2, default=(60.0, 180.0), metavar=("MIN", "MAX")
    )
    ns = parser.parse_args()
    seed = ns.seed if ns.seed is not None else random.SystemRandom().randrange(1, 100_000)
    print(f"game day: seed {seed}, {ns.duration_min:g} minutes", flush=True)
    exit_on_sigterm()
    # The rebuild check runs a tracker in this process: its warnings about the game day's
    # poison are expected (the services' own logs are under .cache/gameday/<time>/).
    logging.basicConfig(level=logging.ERROR)
    settings = GameDaySettings(
        seed=seed,
        duration_s=ns.duration_min * 60,
        bound_s=ns.bound_s,
        broker=ns.broker,
        database=ns.database,
        command=f"make gameday DURATION={ns.duration_min:g} BROKER={ns.broker} "
        f"DATABASE={ns.database} BOUND={ns.bound_s:g}",
        only=tuple(k for k in ns.only.split(",") if k),
        fault_gap_s=tuple(ns.fault_gap_s),
    )
    result = asyncio.run(run_game_day(settings))
    for inv in result.invariants.values():
        print(f"{'pass' if inv.passed else 'FAIL'}  {inv.statement}", flush=True)
        for v in inv.violations:
            print(f"      - {v[:400]}", flush=True)
    print(result.report)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
