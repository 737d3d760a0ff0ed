"""`make chaos`: every crash scenario on a 10,000-file batch, then a report.

    python -m tests.crash.chaos [--files N] [--only NAME[,NAME]] [--db-outage-s S]
        [--host-outage-s S] [--llm-outage-s S] [--update-latest]

Writes `reports/chaos-<time>.md` and `.json` (a list of objects with `scenario`, `files`,
`lost`, `duplicates`, `redundant_calls`, `seconds`, `passed`, and details), copies them to
`reports/chaos-latest.{md,json}`, and prints the Markdown report's path as the last line.
Exit status 0 only if every scenario passed. With `--only ... --update-latest`, the report is
`chaos-latest` with those scenarios replaced by this run's (each scenario says when it ran).
"""

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from cli.processes import exit_on_sigterm
from tests.crash.audio import make_audio
from tests.crash.harness import ChaosSettings
from tests.crash.infra import CACHE, REPO, PrivateCluster, PrivateKafka, PrivateMariaDB
from tests.crash.invariants import Outcome
from tests.crash.lifecycle import Infra
from tests.crash.scenario import Breakables
from tests.crash.scenarios import SCENARIOS, run_scenario


async def run_all(names: list[str], settings: ChaosSettings, workdir: Path) -> list[Outcome]:
    shared = Infra(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        os.environ.get("TEST_DATABASE_URL", "mysql+asyncmy://cofi:cofi@127.0.0.1:3306/cofi"),
    )
    infra = Breakables(shared)
    chosen = [SCENARIOS[n] for n in names]
    if any(s.runs_on == "private-kafka" for s in chosen):
        infra.kafka = PrivateKafka()
        await asyncio.to_thread(infra.kafka.start, True)
    if any(s.runs_on == "private-mariadb" for s in chosen):
        infra.mariadb = PrivateMariaDB()
        await asyncio.to_thread(infra.mariadb.start)
    if any(s.runs_on == "private-cluster" for s in chosen):
        cluster = infra.cluster = PrivateCluster()
        await asyncio.to_thread(cluster.start, fresh=True)
    corrupt = int(settings.files * settings.corrupt_share)
    short = int(settings.files * settings.short_share)
    audio = CACHE / "crash-audio" / f"{settings.files}-{corrupt}-{short}"
    paths = make_audio(audio, settings.files, corrupt, short)
    outcomes = []
    try:
        for scenario in chosen:
            print(f"== {scenario.name}: {scenario.title}", flush=True)
            t0 = time.monotonic()
            try:
                outcome = await run_scenario(
                    scenario, settings, infra, paths, workdir / scenario.name
                )
            except Exception as exc:  # the report must still say which scenario broke
                outcome = Outcome(scenario.name, settings.files, seconds=time.monotonic() - t0)
                outcome.fail(f"harness error: {type(exc).__name__}: {exc}")
                traceback.print_exc()
            verdict = "passed" if outcome.passed else "FAILED"
            print(
                f"   {verdict} in {outcome.seconds:.0f}s: lost {outcome.lost}, duplicates "
                f"{outcome.duplicates}, redundant calls {outcome.redundant_calls} "
                f"(bound {outcome.redundancy_bound})",
                flush=True,
            )
            for v in outcome.violations:
                print(f"   - {v}", flush=True)
            outcomes.append(outcome)
    finally:
        if infra.kafka is not None:
            await asyncio.to_thread(infra.kafka.stop)
        if infra.mariadb is not None:
            await asyncio.to_thread(infra.mariadb.stop)
        if infra.cluster is not None:
            await asyncio.to_thread(infra.cluster.stop)
    return outcomes


def render_markdown(outcomes: list[Outcome], settings: ChaosSettings, stamp: str) -> str:
    lines = [
        f"# Crash suite report ({stamp})",
        "",
        f"{settings.files} files per batch, GPU hosts {settings.gpu_hosts}, latency scale "
        f"{settings.latency_scale} (unless a scenario says otherwise), database outage "
        f"{settings.db_outage_s:.0f}s, GPU host outage {settings.host_outage_s:.0f}s, LLM 401 "
        f"outage {settings.llm_outage_s:.0f}s. "
        "Run with `make chaos`; the invariants are in `tests/crash/invariants.py`.",
        "",
        "| scenario | files | lost | duplicates | redundant calls (bound) | seconds | "
        "longest pause (s) | passed | run |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for o in outcomes:
        pause = "" if o.longest_pause_s is None else f"{o.longest_pause_s:.1f}"
        lines.append(
            f"| {o.scenario} | {o.files} | {o.lost} | {o.duplicates} | "
            f"{o.redundant_calls} ({o.redundancy_bound}) | {o.seconds:.0f} | {pause} | "
            f"{'yes' if o.passed else '**no**'} | {o.ran_at or stamp} |"
        )
    for o in outcomes:
        lines += ["", f"## {o.scenario}", ""]
        if o.latency_scale is not None and o.latency_scale != settings.latency_scale:
            lines += [f"latency scale {o.latency_scale}", ""]
        lines.append(
            "terminal states: " + ", ".join(f"{k} {v}" for k, v in sorted(o.terminal.items()))
        )
        if o.longest_pause_s is not None:
            lines.append(
                f"longest pause in progress (no file finished): {o.longest_pause_s:.1f}s, "
                f"from t+{o.longest_pause_at_s}s"
            )
        if o.redundant_by_stage:
            lines.append(
                "redundant calls by stage: "
                + ", ".join(f"{k} {v}" for k, v in o.redundant_by_stage.items())
            )
        lines += ["", "faults (progress when injected):", ""]
        lines += [
            f"- t+{f['seconds']}s {f['what']} [{f['at_progress']}]"
            + (f", in-flight bound {f['in_flight_bound']}" if f["in_flight_bound"] else "")
            + (f", calls in flight {f['in_flight']}" if f.get("in_flight") else "")
            for f in o.faults
        ]
        if o.notes:
            lines += ["", "measured:", ""] + [f"- {n}" for n in o.notes]
        if o.isolation_ratio is not None:
            lines += [
                "",
                f"healthy hosts' STT throughput: {o.isolation_ratio:.2f} of a run without the "
                "fault (must be >= 0.9)",
            ]
        lines += ["", "per-host completion:", ""]
        lines += [
            f"- {r.host}: {r.finished}/{r.files} files in {r.seconds:.1f}s "
            f"({r.files_per_s:.1f} files/s)"
            for r in o.host_rates
        ]
        if o.violations:
            lines += ["", "violations:", ""] + [f"- {v}" for v in o.violations]
    return "\n".join(lines) + "\n"


def merged_with_latest(outcomes: list[Outcome], folder: Path) -> list[Outcome]:
    """chaos-latest's scenarios, those of `outcomes` replaced by them, in the suite's order."""
    latest = folder / "chaos-latest.json"
    if not latest.exists():
        return outcomes
    title = (folder / "chaos-latest.md").read_text().splitlines()[0]
    stamp = title.partition("(")[2].rstrip(")")  # "# Crash suite report (<stamp>)"
    by_name = {r["scenario"]: Outcome.from_report(r, stamp) for r in json.loads(latest.read_text())}
    by_name.update({o.scenario: o for o in outcomes})
    return [by_name[n] for n in SCENARIOS if n in by_name]


def write_report(
    outcomes: list[Outcome], settings: ChaosSettings, folder: Path
) -> tuple[Path, Path]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for o in outcomes:
        o.ran_at = o.ran_at or stamp
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"chaos-{stamp}.md"
    js = folder / f"chaos-{stamp}.json"
    data: list[dict[str, Any]] = [o.as_report() for o in outcomes]
    js.write_text(json.dumps(data, indent=2) + "\n")
    md.write_text(render_markdown(outcomes, settings, stamp))
    shutil.copyfile(md, folder / "chaos-latest.md")
    shutil.copyfile(js, folder / "chaos-latest.json")
    return md, js


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash.chaos", description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--db-outage-s", type=float, default=60.0)
    parser.add_argument("--host-outage-s", type=float, default=90.0)
    parser.add_argument("--llm-outage-s", type=float, default=60.0)
    parser.add_argument("--latency-scale", type=float, default=0.05)
    parser.add_argument("--reports", type=Path, default=REPO / "reports")
    parser.add_argument("--workdir", type=Path, default=REPO / "reports" / "artifacts")
    parser.add_argument(
        "--update-latest",
        action="store_true",
        help="with --only: report chaos-latest's scenarios with these re-run",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    settings = ChaosSettings(
        files=args.files,
        db_outage_s=args.db_outage_s,
        host_outage_s=args.host_outage_s,
        llm_outage_s=args.llm_outage_s,
        latency_scale=args.latency_scale,
        finish_timeout_s=max(600.0, args.files * 0.25),
    )
    workdir = args.workdir / time.strftime("chaos-%Y%m%d-%H%M%S")
    exit_on_sigterm()
    outcomes = asyncio.run(run_all(names, settings, workdir))
    passed = bool(outcomes) and all(o.passed for o in outcomes)
    if args.update_latest:
        outcomes = merged_with_latest(outcomes, args.reports)
    md, _ = write_report(outcomes, settings, args.reports)
    print(md.relative_to(REPO) if md.is_relative_to(REPO) else md)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
