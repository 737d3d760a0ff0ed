"""One `make bench` run: its options, the infrastructure it shares, and its console output."""

import argparse
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.report import Section, figure_table
from bench.stack import ROOT, Infra


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


@dataclass
class BenchRun:
    """One `make bench` run: its options, the shared infrastructure and what it created."""

    args: argparse.Namespace
    infra: Infra
    run_id: str
    paths: list[Path]  # the cached audio, enough for every figure
    env: dict[str, str]  # knobs for every service (--env)
    only: set[str]
    started: float  # monotonic
    prefixes: list[str] = field(default_factory=list)  # topics to delete at the end

    @property
    def artifacts(self) -> Path:
        out: Path = self.args.out
        return out / "artifacts" / f"bench-{self.run_id}"

    @property
    def warmup(self) -> list[Path]:
        return self.paths[:20]

    @property
    def batch(self) -> list[Path]:
        return self.paths[: self.args.files]

    def prefix(self, kind: str) -> str:
        """A fresh topic prefix (and database name) of this run."""
        prefix = f"bench{self.run_id}{kind}"
        self.prefixes.append(prefix)
        return prefix
