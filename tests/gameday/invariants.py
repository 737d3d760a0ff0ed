"""What a game day must show, checked on the tables, the topics and what the monitor saw
while it ran. Each invariant is a name, a statement and the violations found (none: pass);
`check` never raises on a violation, so the report can say everything at once."""

import base64
import json
import re
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from shared.pipeline import PIPELINE
from tests.gameday.catalogue import BY_NAME
from tests.gameday.day import Day
from tests.gameday.faults import Monitor
from tests.gameday.rebuild_diff import rebuild_differences
from tests.kafka_helpers import read_to_end

FLAG_OF = {s.name: s.flag_column for s in PIPELINE if s.flag_column}
OWN_CONTENT = "undecodable"  # corrupt audio: the one reason an ordinary call may fail
# A failure this long after a fault stopped may still be the fault's (retries, a deadline).
FAULT_TAIL = timedelta(seconds=90)
# Injected records that must each have a dead letter holding their raw bytes.
DEAD_LETTERED = ("poison", "70 KiB key", "schema v99")


@dataclass
class Invariant:
    name: str
    statement: str
    violations: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def fail(self, message: str, examples: list[Any] | None = None) -> None:
        if examples:
            message += f" (e.g. {sorted(map(str, examples))[:5]})"
        self.violations.append(message)


def invariants(bound_s: float) -> dict[str, Invariant]:
    return {
        i.name: i
        for i in (
            Invariant(
                "batches_finish",
                f"every batch reaches Complete or Cancelled within {bound_s:.0f} s after the "
                "last fault clears",
            ),
            Invariant("files_end_once", "every file ends exactly once"),
            Invariant(
                "no_transient_failures",
                "no file fails because of a transient fault (hostile input fails naming its "
                "reason)",
            ),
            Invariant("no_event_lost_or_doubled", "no event lost or duplicated in the tables"),
            Invariant(
                "complete_means_applied",
                "batchStatus never says Complete while an event of the batch is unapplied "
                "(checked against the topics)",
            ),
            Invariant(
                "tables_equal_rebuild", "the tables are byte-identical to a rebuild from the topics"
            ),
            Invariant(
                "no_step_by_hand",
                "no step taken by hand: every step is the seeded workload or a fault's start "
                "or stop, and no service had to be restarted after exiting by itself",
            ),
        )
    }


async def _rows(day: Day, sql: str) -> list[Any]:
    async with day.run.engine.connect() as conn:
        return list((await conn.execute(text(sql))).mappings().all())


def _event(value: bytes | None) -> dict[str, Any] | None:
    try:
        obj = json.loads(value or b"")
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


async def check(
    day: Day, monitor: Monitor, bound_s: float, deadline_s: float
) -> dict[str, Invariant]:
    inv = invariants(bound_s)
    try:
        files = await _rows(
            day,
            "SELECT batchId, file, terminalState, failedStage, failedError, failedAt, triageRoute, "
            + ", ".join(FLAG_OF.values())
            + " FROM fileDistribution",
        )
        status = {r["batchId"]: r["status"] for r in await _rows(day, "SELECT * FROM batchStatus")}
        logs = await _rows(
            day, "SELECT batch_id, call_id, stage_name, attempt, status FROM processing_logs"
        )
        letters = await _rows(
            day,
            "SELECT sourceTopic, sourcePartition, sourceOffset, keyB64, valueB64 FROM deadLetters",
        )
        settings = day.config.settings()
        records = await read_to_end(
            day.config.bootstrap,
            settings.topics.all_topics(settings.host_ips),
            day.config.partitions,
        )
    except Exception as exc:  # neither tables nor topics to judge by: every invariant fails
        for i in inv.values():
            i.fail(f"could not read the tables and topics: {type(exc).__name__}: {exc}"[:400])
        return inv
    checks: list[tuple[str, Callable[[], Awaitable[None] | None]]] = [
        ("batches_finish", lambda: _finish(day, inv["batches_finish"], status, deadline_s)),
        ("files_end_once", lambda: _ends_once(day, inv["files_end_once"], files)),
        (
            "no_transient_failures",
            lambda: _failures(day, inv["no_transient_failures"], files, records),
        ),
        (
            "no_event_lost_or_doubled",
            lambda: _lost_or_doubled(
                day, inv["no_event_lost_or_doubled"], files, logs, letters, records
            ),
        ),
        (
            "complete_means_applied",
            lambda: _complete_applied(day, monitor, inv["complete_means_applied"], records),
        ),
        ("tables_equal_rebuild", lambda: _rebuild(day, inv["tables_equal_rebuild"])),
        ("no_step_by_hand", lambda: _by_hand(day, inv["no_step_by_hand"])),
    ]
    for name, run_check in checks:
        try:
            pending = run_check()
            if pending is not None:
                await pending
        except Exception as exc:  # a check that cannot run is a failed check, said so
            inv[name].fail(f"the check itself failed: {type(exc).__name__}: {exc}"[:400])
    return inv


async def _rebuild(day: Day, inv: Invariant) -> None:
    for difference in await rebuild_differences(day.run):
        inv.fail(f"the tables differ from a rebuild from the topics: {difference}")


def _finish(day: Day, inv: Invariant, status: dict[str, str], deadline_s: float) -> None:
    open_ = [
        f"{b} ({status.get(b, 'no row')})"
        for b in day.batches
        if status.get(b) not in ("Complete", "Cancelled")
    ]
    if open_:
        inv.fail(f"{len(open_)} batches neither Complete nor Cancelled at the end", open_)
    late = [
        f"{b.batch_id} at {b.finished_s}s"
        for b in day.batches.values()
        if b.finished_s is not None and b.finished_s > deadline_s
    ]
    if late:
        inv.fail(f"{len(late)} batches finished after the bound ({deadline_s:.0f}s)", late)


def _by_batch(files: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for f in files:
        out[str(f["batchId"])].append(f)
    return out


def _ends_once(day: Day, inv: Invariant, files: list[Any]) -> None:
    rows = _by_batch(files)
    missing, unended, doubled, phantoms, late, disagree = [], [], [], [], [], []
    for batch in day.batches.values():
        have = Counter(str(f["file"]) for f in rows.get(batch.batch_id, []))
        expected = set(batch.files)
        missing += [f"{batch.batch_id}/{n}" for n in expected - set(have)]
        doubled += [f"{batch.batch_id}/{n}" for n, c in have.items() if c > 1]
        phantoms += [f"{batch.batch_id}/{n}" for n in set(have) - expected - set(batch.late_files)]
        late += [f"{batch.batch_id}/{n}" for n in set(have) & set(batch.late_files)]
        for f in rows.get(batch.batch_id, []):
            state = f["terminalState"]
            if state is None and batch.status != "Cancelled":
                unended.append(f"{batch.batch_id}/{f['file']}")
            if not _agrees(f):
                disagree.append(f"{batch.batch_id}/{f['file']} ({state})")
    for what, found in (
        ("uploaded files without a fileDistribution row", missing),
        ("files of a batch that is not Cancelled without a terminal state", unended),
        ("files with more than one row", doubled),
        ("rows of files never uploaded", phantoms),
        ("rows of files uploaded after their batch finished (must be rejected)", late),
        ("files whose done flags disagree with their terminal state", disagree),
    ):
        if found:
            inv.fail(f"{len(found)} {what}", found)


def _agrees(f: Any) -> bool:
    flags: dict[str, bool] = {stage: f[column] == 1 for stage, column in FLAG_OF.items()}
    state = f["terminalState"]
    if state == "done":
        return all(flags.values())
    if state == "skipped":
        return f["triageRoute"] == "skip" and not flags.get("llm2", False)
    if state == "failed":
        return not flags.get(str(f["failedStage"]), False)
    return True


def _excused(day: Day, f: Any) -> str:
    """Why a failure is one the plan expects ("" if it is not): corrupt audio, a hostile
    upload naming a reason, or what a fault may make fail while it is on (its `may_fail`)."""
    error = str(f["failedError"] or "")
    batch = day.batches.get(str(f["batchId"]))
    if OWN_CONTENT in error:
        return "corrupt audio"
    if batch is not None and str(f["file"]) in batch.expected_failures:
        return f"hostile upload {str(f['file'])[:40]}: {error[:120]}" if error.strip() else ""
    at = f["failedAt"]
    for fault in day.faults:
        pattern = BY_NAME[fault.kind].may_fail
        if not pattern or at is None or not re.search(pattern, error, re.IGNORECASE):
            continue
        stopped = fault.stopped_at or at
        if fault.started_at <= at <= stopped + FAULT_TAIL:
            return f"{fault.kind}: {error[:120]}"
    return ""


def _failures(day: Day, inv: Invariant, files: list[Any], records: list[Any]) -> None:
    failed = [f for f in files if f["terminalState"] == "failed"]
    day.notes.append(
        "files by terminal state: "
        + str(dict(Counter(str(f["terminalState"]) for f in files).most_common()))
    )
    reasons = Counter(_excused(day, f) for f in failed)
    day.notes += [f"{n} failed as expected: {why}" for why, n in reasons.most_common() if why]
    bad = [
        f"{f['batchId']}/{str(f['file'])[:60]} at {f['failedStage']}: {str(f['failedError'])[:160]}"
        for f in failed
        if not _excused(day, f)
    ]
    if bad:
        inv.fail(f"{len(bad)} files failed of a fault they should have waited out", bad)
    hostile = {(b.batch_id, n) for b in day.batches.values() for n in b.expected_failures}
    transient = set()
    for r in records:
        e = _event(r.value)
        if e and e.get("type") == "FileFailed" and e.get("error_kind") in ("transient", "deadline"):
            key = (str(e.get("batch_id")), str(e.get("file_name")))
            if key[0] in day.batches and key not in hostile:
                transient.add(f"{key[0]}/{key[1][:60]} at {e.get('stage')}: {e.get('error')}"[:220])
    if transient:
        inv.fail(
            f"{len(transient)} FileFailed events of kind transient or deadline", list(transient)
        )


def _lost_or_doubled(
    day: Day,
    inv: Invariant,
    files: list[Any],
    logs: list[Any],
    letters: list[Any],
    records: list[Any],
) -> None:
    identity = Counter((r["batch_id"], r["call_id"], r["stage_name"], r["attempt"]) for r in logs)
    doubled = [k for k, n in identity.items() if n > 1]
    if doubled:
        inv.fail(
            f"{len(doubled)} (batch, file, stage, attempt) with two processing_logs rows", doubled
        )
    logged = {
        (r["batch_id"], r["call_id"], r["stage_name"]) for r in logs if r["status"] == "success"
    }
    unlogged = set()
    for r in records:
        e = _event(r.value)
        if not e or e.get("type") != "FileStageCompleted" or e.get("stage") not in FLAG_OF:
            continue
        batch = day.batches.get(str(e.get("batch_id")))
        name = str(e.get("file_name"))
        if batch is None or batch.status == "Cancelled" or name not in batch.files:
            continue
        if (r.topic, r.partition, r.offset) in day.injected:
            continue
        if (batch.batch_id, name, e["stage"]) not in logged:
            unlogged.add(f"{batch.batch_id}/{name[:60]} {e['stage']}")
    if unlogged:
        inv.fail(
            f"{len(unlogged)} stage events on the topics with no processing_logs row",
            list(unlogged),
        )
    by_source = {(r["sourceTopic"], r["sourcePartition"], r["sourceOffset"]): r for r in letters}
    raw = {(r.topic, r.partition, r.offset): r for r in records}
    unlettered, cut = [], []
    for where, what in day.injected.items():
        if what not in DEAD_LETTERED:
            continue
        letter = by_source.get(where)
        if letter is None:
            unlettered.append(f"{what} at {where}")
            continue
        record = raw.get(where)
        if record is not None and (
            _b64(letter["valueB64"]) != (record.value or b"")
            or _b64(letter["keyB64"]) != (record.key or b"")
        ):
            cut.append(f"{what} at {where}")
    if unlettered:
        inv.fail(f"{len(unlettered)} injected records without a dead letter", unlettered)
    if cut:
        inv.fail(f"{len(cut)} dead letters whose key or value was cut", cut)


def _b64(stored: str | None) -> bytes | None:
    """A dead letter's base64 column; None when it does not decode (it was cut)."""
    try:
        return base64.b64decode(stored or "", validate=True)
    except ValueError:
        return None


def _complete_applied(day: Day, monitor: Monitor, inv: Invariant, records: list[Any]) -> None:
    by_batch: dict[str, list[Any]] = defaultdict(list)
    for r in records:
        e = _event(r.value)
        if (
            e
            and e.get("batch_id") in day.batches
            and (r.topic, r.partition, r.offset) not in day.injected
        ):
            by_batch[str(e["batch_id"])].append((r, e))
    unapplied = []
    for obs in monitor.observations:
        if obs.status != "Complete":
            continue
        for r, e in by_batch[obs.batch_id]:
            if r.offset >= obs.ends.get(_tp(r), 0):
                continue  # written after the tables were read
            name = str(e.get("file_name"))
            if name not in day.batches[obs.batch_id].files:
                continue  # a late upload: rejected, never applied, on purpose
            row = obs.rows.get(name)
            kind, stage = e.get("type"), e.get("stage")
            if kind == "FileStageCompleted" and stage in FLAG_OF:
                applied = row is not None and row[FLAG_OF[stage]] == 1
            elif kind == "FileFailed":
                applied = row is not None and row["terminalState"] is not None
            else:
                continue
            if not applied:
                unapplied.append(f"{obs.batch_id}/{str(e.get('file_name'))[:60]} {kind} {stage}")
    if unapplied:
        inv.fail(f"{len(unapplied)} events unapplied when their batch read Complete", unapplied)


def _tp(r: Any) -> Any:
    from aiokafka.structs import TopicPartition

    return TopicPartition(r.topic, r.partition)


def _by_hand(day: Day, inv: Invariant) -> None:
    planned = {"workload", "fault-start", "fault-stop"}
    unplanned = [f"{s.at_s}s {s.kind}: {s.what}" for s in day.steps if s.kind not in planned]
    if unplanned:
        inv.fail(f"{len(unplanned)} steps outside the plan", unplanned)
    if day.died:
        inv.fail(f"{len(day.died)} services exited by themselves", day.died)
