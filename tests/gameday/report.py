"""The game day's report: `reports/gameday-<time>.md` with its chart (files per minute per
stage, the faults shaded) as a PNG beside it, both copied to `gameday-latest.*`."""

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.gameday.catalogue import BY_NAME
from tests.gameday.day import Day
from tests.gameday.faults import Monitor
from tests.gameday.invariants import Invariant
from tests.gameday.kinds import FaultKind


@dataclass(frozen=True)
class RunFacts:
    stamp: str
    duration_s: float
    bound_s: float
    deadline_s: float
    wall_s: float
    broker: str
    database: str
    eligible: list[FaultKind]
    command: str


def per_minute(monitor: Monitor) -> tuple[list[float], dict[str, list[int]]]:
    """Files through each stage per minute of the run (the differences of the samples)."""
    if not monitor.samples:
        return [], {}
    last = int(monitor.samples[-1][0] // 60)
    minutes = list(range(last + 1))
    names = list(monitor.samples[0][1])
    at_end: dict[int, dict[str, int]] = {}
    for seconds, counts in monitor.samples:
        at_end[int(seconds // 60)] = counts
    series: dict[str, list[int]] = {n: [] for n in names}
    previous = dict.fromkeys(names, 0)
    for m in minutes:
        counts = at_end.get(m, previous)
        for n in names:
            series[n].append(max(0, counts[n] - previous[n]))
        previous = counts
    return [m + 0.5 for m in minutes], series


def chart(day: Day, monitor: Monitor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, series = per_minute(monitor)
    fig, ax = plt.subplots(figsize=(11, 5))
    for fault in day.faults:
        end = fault.stopped_s if fault.stopped_s is not None else fault.started_s
        ax.axvspan(
            fault.started_s / 60, max(end, fault.started_s + 3) / 60, alpha=0.12, color="red"
        )
        ax.text(
            fault.started_s / 60,
            0.98,
            fault.kind,
            rotation=90,
            fontsize=7,
            va="top",
            transform=ax.get_xaxis_transform(),
        )
    for name, values in series.items():
        ax.plot(xs, values, marker="o", markersize=3, label=name)
    ax.set_xlabel("minute of the game day")
    ax.set_ylabel("files per minute")
    ax.set_ylim(bottom=0)
    ax.set_title(f"game day, seed {day.seed}: files per minute per stage (faults shaded)")
    ax.legend(fontsize=8, ncol=5)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(
    day: Day, monitor: Monitor, inv: dict[str, Invariant], facts: RunFacts, folder: Path
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"gameday-{facts.stamp}.md"
    png = folder / f"gameday-{facts.stamp}.png"
    chart(day, monitor, png)
    md.write_text(markdown(day, monitor, inv, facts, png.name))
    shutil.copyfile(png, folder / "gameday-latest.png")
    latest = markdown(day, monitor, inv, facts, "gameday-latest.png")
    (folder / "gameday-latest.md").write_text(latest)
    return md


def markdown(
    day: Day, monitor: Monitor, inv: dict[str, Invariant], facts: RunFacts, png: str
) -> str:
    passed = all(i.passed for i in inv.values()) and not day.harness_errors
    files = sum(len(b.files) for b in day.batches.values())
    lines = [
        f"# Game day {facts.stamp}: {'PASSED' if passed else 'FAILED'}",
        "",
        f"- Seed **{day.seed}**; reproduce with `{facts.command}`.",
        f"- {facts.duration_s / 60:.0f} minutes of batches and faults, then up to "
        f"{facts.bound_s:.0f} s for every batch to finish after the last fault cleared "
        f"(deadline {facts.deadline_s:.0f} s); {facts.wall_s:.0f} s in all.",
        f"- {len(day.batches)} batches, {files} files; {len(day.faults)} faults drawn from "
        f"{len(facts.eligible)} kinds this infrastructure can run (broker {facts.broker}, "
        f"database {facts.database}; the catalogue holds {len(BY_NAME)}).",
        "",
        "## Invariants",
        "",
        "While it ran, every 2 s, the monitor noted when each batch first read Complete or "
        "Cancelled (its files' rows and the topics' end offsets just before: the Complete check "
        "compares them with every event below those offsets) and restarted any service that had "
        "exited by itself (counted against the last invariant); at the end, the rest.",
        "",
        "| invariant | result | what was found |",
        "|---|---|---|",
    ]
    for i in inv.values():
        found = "<br>".join(v.replace("|", "/")[:700] for v in i.violations) or "-"
        lines.append(f"| {i.statement} | {'pass' if i.passed else '**FAIL**'} | {found} |")
    if day.harness_errors:
        lines += ["", "The game day's own machinery failed: " + "; ".join(day.harness_errors)]
    lines += [
        "",
        "## Timeline of the faults",
        "",
        "| start (s) | stop (s) | fault | what was done | the pipeline must | error |",
        "|---:|---:|---|---|---|---|",
    ]
    for f in sorted(day.faults, key=lambda f: f.started_s):
        kind = BY_NAME[f.kind]
        lines.append(
            f"| {f.started_s:.0f} | {f.stopped_s if f.stopped_s is not None else '-'} | "
            f"{f.kind} | {(f.detail or kind.title).replace('|', '/')[:200]} | {kind.expects} | "
            f"{f.error.replace('|', '/')[:200] or '-'} |"
        )
    lines += [
        "",
        "## Files per minute per stage",
        "",
        f"![files per minute per stage]({png})",
        "",
        "## Batches",
        "",
        "| batch | plan | files | submitted (s) | finished (s) | status |",
        "|---|---|---:|---:|---:|---|",
    ]
    for b in day.batches.values():
        finished = "-" if b.finished_s is None else f"{b.finished_s:.0f}"
        lines.append(
            f"| {b.batch_id} | {b.plan} | {len(b.files)} | {b.submitted_s:.0f} | {finished} | "
            f"{b.status or '-'} |"
        )
    notes = day.notes[:40] + monitor.notes()
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += [
        "",
        "## The catalogue",
        "",
        "| fault | needs | from | the pipeline must |",
        "|---|---|---|---|",
    ]
    for k in BY_NAME.values():
        origin = f"crash: {k.crash}" if k.crash else f"issue 19: {k.issue}"
        lines.append(f"| {k.name}: {k.title} | {k.needs} | {origin} | {k.expects} |")
    return "\n".join(lines) + "\n"
