"""The bench's report: figures with their targets, as Markdown and JSON, plus a history.

Rendering is pure (strings in, strings out); `write_reports` is the only function touching
files.
"""

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str | None = None  # e.g. "<= 1.5"; None for a figure shown for information
    met: bool | None = None

    @classmethod
    def at_most(cls, name: str, value: float, unit: str, limit: float) -> "Figure":
        return cls(name, value, unit, f"<= {limit:g}", value <= limit)

    @classmethod
    def at_least(cls, name: str, value: float, unit: str, limit: float) -> "Figure":
        return cls(name, value, unit, f">= {limit:g}", value >= limit)

    @classmethod
    def info(cls, name: str, value: float, unit: str) -> "Figure":
        return cls(name, value, unit)


@dataclass
class Section:
    """One part of the benchmark: its figures and the Markdown lines that explain them."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    started_at: str
    commit: str
    command: str
    machine: str
    duration_s: float
    note: str = ""


def fmt(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def verdict(figure: Figure) -> str:
    if figure.met is None:
        return ""
    return "yes" if figure.met else "**no**"


def figures_json(sections: Sequence[Section]) -> str:
    return json.dumps([asdict(f) for s in sections for f in s.figures], indent=2) + "\n"


def figure_table(figures: Sequence[Figure]) -> list[str]:
    lines = ["| figure | value | unit | target | met |", "|---|---:|---|---|---|"]
    lines += [
        f"| {f.name} | {fmt(f.value)} | {f.unit} | {f.target or ''} | {verdict(f)} |"
        for f in figures
    ]
    return lines


def history_entry(run: RunInfo, sections: Sequence[Section]) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "at": run.started_at,
        "commit": run.commit,
        "note": run.note,
        "figures": {f.name: [f.value, f.unit] for s in sections for f in s.figures if f.target},
    }


def history_lines(history: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for entry in reversed(history):
        values = "; ".join(
            f"{name} {fmt(value)} {unit}" for name, (value, unit) in entry["figures"].items()
        )
        note = f" — {entry['note']}" if entry.get("note") else ""
        lines.append(f"- {entry['at']} `{entry['commit']}`{note}: {values}")
    return lines


FINDINGS = Path(__file__).resolve().parent / "FINDINGS.md"


def render_markdown(
    run: RunInfo,
    sections: Sequence[Section],
    history: Sequence[dict[str, Any]],
    findings_link: str = "../bench/FINDINGS.md",
) -> str:
    all_figures = [f for s in sections for f in s.figures]
    unmet = [f.name for f in all_figures if f.met is False]
    lines = [
        "# cofi benchmark",
        "",
        f"Run `{run.run_id}` at {run.started_at}, commit `{run.commit}`, {run.machine}; "
        f"`{run.command}` took {run.duration_s:.0f} s.",
        "Every ratio compares two measurements taken in the same run on the same machine. "
        "The CPU is shared with other work, so single runs are noisy.",
        "",
        "## Figures",
        "",
        *figure_table(all_figures),
        "",
        f"Targets unmet: {', '.join(unmet) if unmet else 'none'}. What limits them, with "
        f"profiles and proposals: [bench/FINDINGS.md]({findings_link}).",
    ]
    for section in sections:
        lines += ["", f"## {section.title}", "", *section.details]
    lines += ["", "## History", "", *history_lines(history)]
    return "\n".join(lines) + "\n"


README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def readme_with_figures(readme: str, run: RunInfo, sections: Sequence[Section]) -> str:
    """The README with its Benchmarks block replaced by this run's figures (if it has one)."""
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(readme):
        return readme
    block = [
        README_START,
        f"Latest `make bench` (commit `{run.commit}`, {run.started_at}, {run.machine}; "
        "details and history in [reports/bench.md](reports/bench.md)):",
        "",
        *figure_table([f for s in sections for f in s.figures if f.target]),
        README_END,
    ]
    return pattern.sub(lambda _: "\n".join(block), readme)


def write_reports(
    out_dir: Path, run: RunInfo, sections: Sequence[Section], readme: Path | None = None
) -> Path:
    """Write bench.md, bench.json and append to the history; returns the JSON's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    history_path = out_dir / "bench_history.json"
    history: list[dict[str, Any]] = (
        json.loads(history_path.read_text()) if history_path.exists() else []
    )
    history.append(history_entry(run, sections))
    history_path.write_text(json.dumps(history, indent=2) + "\n")
    # A report folder below reports/ (`--out reports/fleet-cost`) links one level further up.
    link = os.path.relpath(FINDINGS, out_dir.resolve())
    (out_dir / "bench.md").write_text(render_markdown(run, sections, history, link))
    json_path = out_dir / "bench.json"
    json_path.write_text(figures_json(sections))
    if readme is not None and readme.exists():
        readme.write_text(readme_with_figures(readme.read_text(), run, sections))
    return json_path
