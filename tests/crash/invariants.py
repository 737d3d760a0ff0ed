"""What must hold after any scenario, checked with SQL on the tables, the topics and the
simulator's call counts. `check` never raises on a violation: it lists them, so the report can
say everything that went wrong at once and the test can assert the list is empty."""

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text

from services.llm_stage.prompting import caller_ref
from shared.pipeline import PIPELINE, STATUS_COLUMNS, TRIAGE, skipped_by
from shared.stages import GPU_STAGES, LLM_STAGES, STAGES
from tests.crash.faults import allowed_redundancy
from tests.crash.harness import ChaosRun
from tests.kafka_helpers import read_to_end

# Read from the table: a stage's done flag, and the batch's status columns.
FLAGS = {row.name: row.flag_column for row in PIPELINE if row.flag_column is not None}
# The stages whose success a file in each terminal state must show in processing_logs.
LOGGED_STAGES: dict[str, set[str]] = {
    "done": set[str](STAGES),
    "skipped": set[str](STAGES) - {row.name for row in skipped_by(TRIAGE, "skip")},
}


@dataclass
class HostRate:
    host: str
    files: int
    finished: int
    seconds: float

    @property
    def files_per_s(self) -> float:
        return self.finished / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Outcome:
    scenario: str
    files: int
    lost: int = 0
    duplicates: int = 0
    redundant_calls: int = 0
    redundant_by_stage: dict[str, int] = field(default_factory=dict)
    allowed_by_stage: dict[str, int] = field(default_factory=dict)
    redundancy_bound: int = 0
    seconds: float = 0.0
    latency_scale: float | None = None
    # The longest gap between successive increases of finished files, and when it began.
    longest_pause_s: float | None = None
    longest_pause_at_s: float | None = None
    terminal: dict[str, int] = field(default_factory=dict)
    host_rates: list[HostRate] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    # What a scenario measured beyond the invariants, one sentence each, for the report.
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    # Healthy hosts' STT throughput over a run without the fault (isolation scenarios).
    isolation_ratio: float | None = None
    ran_at: str = ""  # the run's stamp (a report may merge scenarios of several runs)

    @property
    def passed(self) -> bool:
        return not self.violations

    def fail(self, message: str, examples: list[Any] | None = None) -> None:
        if examples:
            message += f" (e.g. {sorted(map(str, examples))[:5]})"
        self.violations.append(message)

    def as_report(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "files": self.files,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "redundant_calls": self.redundant_calls,
            "seconds": round(self.seconds, 1),
            "passed": self.passed,
            "latency_scale": self.latency_scale,
            "longest_pause_s": self.longest_pause_s,
            "longest_pause_at_s": self.longest_pause_at_s,
            "redundancy_bound": self.redundancy_bound,
            "redundant_by_stage": self.redundant_by_stage,
            "allowed_by_stage": self.allowed_by_stage,
            "terminal": self.terminal,
            "host_rates": [
                {
                    "host": r.host,
                    "files": r.files,
                    "finished": r.finished,
                    "seconds": round(r.seconds, 1),
                    "files_per_s": round(r.files_per_s, 1),
                }
                for r in self.host_rates
            ],
            "faults": self.faults,
            "notes": self.notes,
            "isolation_ratio": self.isolation_ratio,
            "violations": self.violations,
            "ran_at": self.ran_at,
        }

    @classmethod
    def from_report(cls, report: dict[str, Any], ran_at: str = "") -> "Outcome":
        """An outcome as `as_report` wrote it (`ran_at` for reports that did not say)."""
        rates = [
            HostRate(r["host"], r["files"], r["finished"], r["seconds"])
            for r in report.get("host_rates", [])
        ]
        return cls(
            scenario=report["scenario"],
            files=report["files"],
            lost=report["lost"],
            duplicates=report["duplicates"],
            redundant_calls=report["redundant_calls"],
            redundant_by_stage=report.get("redundant_by_stage", {}),
            allowed_by_stage=report.get("allowed_by_stage", {}),
            redundancy_bound=report.get("redundancy_bound", 0),
            seconds=report["seconds"],
            latency_scale=report.get("latency_scale"),
            longest_pause_s=report.get("longest_pause_s"),
            longest_pause_at_s=report.get("longest_pause_at_s"),
            terminal=report.get("terminal", {}),
            host_rates=rates,
            faults=report.get("faults", []),
            notes=report.get("notes", []),
            violations=report.get("violations", []),
            isolation_ratio=report.get("isolation_ratio"),
            ran_at=report.get("ran_at") or ran_at,
        )


def _decode(value: bytes | None) -> dict[str, Any] | None:
    try:
        obj = json.loads(value or b"")
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


async def _rows(run: ChaosRun, sql: str) -> list[Any]:
    async with run.engine.connect() as conn:
        result = await conn.execute(text(sql), {"b": run.batch_id})
        return list(result.mappings().all())


async def check(run: ChaosRun) -> Outcome:
    """Every invariant of the crash suite for the run's batch, after it finished."""
    allowed = allowed_redundancy(run.faults)
    out = Outcome(
        run.scenario,
        run.files,
        seconds=time.monotonic() - run.started,
        latency_scale=run.settings.latency_scale,
        allowed_by_stage=allowed,
        redundancy_bound=sum(allowed.values()),
        faults=[{**vars(f), "in_flight_bound": f.in_flight_bound} for f in run.faults],
    )
    names = {p.name for p in run.paths}
    files = await _rows(
        run,
        "SELECT file, ip, terminalState, failedStage, triageRoute, createdAt, finishedAt, "
        + ", ".join(FLAGS.values())
        + " FROM fileDistribution WHERE batchId = :b",
    )
    status = await _rows(run, "SELECT * FROM batchStatus WHERE batchId = :b")
    logs = await _rows(
        run,
        "SELECT call_id, stage_name, attempt, status, host FROM processing_logs "
        "WHERE batch_id = :b",
    )
    records = await read_to_end(
        run.config.bootstrap,
        [run.topics.uploads, run.topics.done, run.topics.failed],
        run.config.partitions,
    )

    _check_files(out, names, files)
    _check_batch_status(out, files, status)
    _check_topics(out, run, names, files, records)
    _check_logs(out, files, logs)
    _check_redundancy(out, run, logs, await run.sim_stats())
    late = [f.what for f in run.faults if f.terminal >= run.files and not f.may_follow_batch]
    if late:
        out.fail(f"faults after the batch had finished, not mid-batch: {late}")
    out.host_rates = _host_rates(files)
    out.terminal = dict(Counter(str(f["terminalState"]) for f in files))
    return out


def _check_files(out: Outcome, names: set[str], files: list[Any]) -> None:
    per_file = Counter(f["file"] for f in files)
    seen = set(per_file)
    missing = names - seen
    unfinished = {f["file"] for f in files if f["terminalState"] is None}
    out.lost += len(missing) + len(unfinished)
    if missing:
        out.fail(f"{len(missing)} files of the batch have no fileDistribution row", list(missing))
    if unfinished:
        out.fail(f"{len(unfinished)} files have no terminal state", list(unfinished))
    phantoms = seen - names
    if phantoms:
        out.fail(f"{len(phantoms)} fileDistribution rows for files never uploaded", list(phantoms))
    doubled = [n for n, c in per_file.items() if c > 1]
    out.duplicates += len(doubled)
    if doubled:
        out.fail(f"{len(doubled)} files have more than one fileDistribution row", doubled)
    bad_state = {f["file"] for f in files} - {
        f["file"] for f in files if f["terminalState"] in ("done", "skipped", "failed", None)
    }
    if bad_state:
        out.fail(f"{len(bad_state)} files in an unexpected terminal state", list(bad_state))

    disagree = []
    for f in files:
        flags = {stage: f[column] == 1 for stage, column in FLAGS.items()}
        state = f["terminalState"]
        if state == "done":
            ok = all(flags.values()) and f["triageRoute"] == "stt"
        elif state == "skipped":
            ok = (
                f["triageRoute"] == "skip"
                and flags["denoise"]
                and flags["ivr"]
                and flags["lid"]
                and not (flags["stt"] or flags["llm1"] or flags["llm2"])
            )
        elif state == "failed":
            stage = f["failedStage"]
            ok = stage in STAGES and not flags.get(stage, False) and not flags["llm2"]
        else:
            ok = True  # counted as lost above
        if not ok:
            disagree.append(f["file"])
    if disagree:
        out.fail(f"{len(disagree)} files whose done flags disagree with their state", disagree)


def _check_batch_status(out: Outcome, files: list[Any], status: list[Any]) -> None:
    if len(status) != 1:
        out.fail(f"expected one batchStatus row, found {len(status)}")
        return
    row = status[0]
    counts = Counter(f["terminalState"] for f in files)
    expected = {
        "totalFiles": out.files,
        "knownFiles": len(files),
        "doneFiles": counts["done"],
        "skippedFiles": counts["skipped"],
        "failedFiles": counts["failed"],
    }
    wrong = {k: (row[k], v) for k, v in expected.items() if row[k] != v}
    if wrong:
        out.fail(f"batchStatus disagrees with fileDistribution (have, want): {wrong}")
    not_complete = {c: row[c] for c in (*STATUS_COLUMNS, "status") if row[c] != "Complete"}
    if not_complete:
        out.fail(f"batchStatus not Complete: {not_complete}")


def _check_topics(
    out: Outcome, run: ChaosRun, names: set[str], files: list[Any], records: list[Any]
) -> None:
    closed: list[int] = []
    on_topics: dict[str, set[str]] = defaultdict(set)
    for r in records:
        event = _decode(r.value)
        if event is None or event.get("batch_id") != run.batch_id:
            continue
        kind = event.get("type")
        if kind == "BatchClosed":
            closed.append(int(event.get("file_count", -1)))
        elif kind == "FileFailed":
            on_topics["failed"].add(str(event.get("file_name")))
        elif kind == "FileStageCompleted" and r.topic == run.topics.done:
            state = "done" if event.get("stage") == "llm2" else "skipped"
            on_topics[state].add(str(event.get("file_name")))
    if not closed or any(c != out.files for c in closed) or len(files) != out.files:
        out.fail(f"BatchClosed.file_count {closed} != files {out.files} != rows {len(files)}")
    unreported = names - set().union(*on_topics.values())
    if unreported:
        out.lost += len(unreported)
        out.fail(
            f"{len(unreported)} files have no terminal event on the done/failed topics",
            list(unreported),
        )
    wrong = [
        f["file"]
        for f in files
        if f["terminalState"] in ("done", "skipped", "failed")
        and f["file"] not in on_topics[f["terminalState"]]
    ]
    if wrong:
        out.fail(f"{len(wrong)} files whose terminal state no topic event supports", wrong)


def _check_logs(out: Outcome, files: list[Any], logs: list[Any]) -> None:
    identity = Counter((r["call_id"], r["stage_name"], r["attempt"]) for r in logs)
    doubled = [k for k, n in identity.items() if n > 1]
    out.duplicates += len(doubled)
    if doubled:
        out.fail(
            f"{len(doubled)} (file, stage, attempt) identities with two processing_logs rows",
            doubled,
        )
    succeeded: dict[str, set[str]] = defaultdict(set)
    failed: dict[str, set[str]] = defaultdict(set)
    for r in logs:
        (succeeded if r["status"] == "success" else failed)[r["call_id"]].add(r["stage_name"])
    missing = []
    for f in files:
        state = f["terminalState"]
        if state in LOGGED_STAGES and not LOGGED_STAGES[state] <= succeeded[f["file"]]:
            missing.append(f["file"])
        if state == "failed" and f["failedStage"] not in failed[f["file"]]:
            missing.append(f["file"])
    if missing:
        out.fail(f"{len(missing)} files whose processing_logs lack a stage's attempt", missing)


def _check_redundancy(out: Outcome, run: ChaosRun, logs: list[Any], stats: dict[str, Any]) -> None:
    """Model calls the simulator served beyond the attempts the tables record: work redone
    because a consumer died before committing it (or a duplicate event made it run twice)."""
    logged: Counter[tuple[str, str]] = Counter()
    for r in logs:
        if r["attempt"] and r["attempt"] >= 1:
            stage = "llm" if r["stage_name"] in LLM_STAGES else r["stage_name"]
            logged[(r["call_id"], stage)] += 1
    calls: Counter[tuple[str, str]] = Counter()
    served_by: dict[tuple[str, str], set[str]] = defaultdict(set)
    for host, host_calls in stats["gpu"]["calls"].items():
        for stage, per_file in host_calls.items():
            for name, n in per_file.items():
                calls[(name, stage)] += n
                served_by[(name, stage)].add(host)
    # The LLM API sees a file only by its opaque reference (the `user` field).
    by_ref = {caller_ref(run.batch_id, name): name for name, _ in logged}
    for ref, n in stats["llm"]["calls"].items():
        calls[(by_ref.get(ref, ref), "llm")] += n
    by_stage: Counter[str] = Counter()
    # Which GPU hosts served the redone calls (a file's calls on two hosts count for both).
    by_host: Counter[str] = Counter()
    for key, n in calls.items():
        extra = n - logged[key]
        if extra > 0:
            by_stage[key[1]] += extra
            for host in served_by.get(key, ()):
                by_host[host] += extra
    out.redundant_by_stage = {s: by_stage[s] for s in (*GPU_STAGES, "llm") if by_stage[s]}
    out.redundant_calls = sum(by_stage.values())
    over = {
        s: (by_stage[s], out.allowed_by_stage.get(s, 0))
        for s in (*GPU_STAGES, "llm")
        if by_stage[s] > out.allowed_by_stage.get(s, 0)
    }
    if over:
        out.fail(
            f"stages redid more model calls than the faults' in-flight bounds allow "
            f"(redone, allowed): {over}; GPU calls redone by the hosts that served them: "
            f"{dict(sorted(by_host.items()))}"
        )


def _host_rates(files: list[Any]) -> list[HostRate]:
    by_host: dict[str, list[Any]] = defaultdict(list)
    for f in files:
        by_host[str(f["ip"])].append(f)
    rates = []
    for host, rows in sorted(by_host.items()):
        starts = [r["createdAt"] for r in rows if isinstance(r["createdAt"], datetime)]
        ends = [r["finishedAt"] for r in rows if isinstance(r["finishedAt"], datetime)]
        seconds = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
        rates.append(HostRate(host, len(rows), len(ends), seconds))
    return rates
