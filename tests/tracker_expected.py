"""The tables the tracker must leave after `tracker_scenario`'s batch, however its events
were delivered: every file's row, the batch's row, each attempt's log row and the milestones."""

import hashlib
import itertools
from collections import Counter
from typing import Any

from services.tracker.tables import (
    batch_execution_log,
    batch_status,
    file_distribution,
    processing_logs,
)
from shared.pipeline import FLAG_COLUMNS, PIPELINE
from tests.tracker_scenario import HOSTS, STAGES, Scenario

MILESTONE_ORDER = {"stage_start": 0, "stage_progress": 1, "stage_complete": 2}


def assert_expected_tables(
    sc: Scenario, tables: dict[str, list[tuple[Any, ...]]], n: int = 300, interval: int = 100
) -> None:
    fd_cols = [c.name for c in file_distribution.c if c.name != "id"]
    files = {
        row[fd_cols.index("file")]: dict(zip(fd_cols, row, strict=True))
        for row in tables["fileDistribution"]
    }
    assert len(files) == n
    assert Counter(f["terminalState"] for f in files.values()) == sc.terminal
    for name, f in files.items():
        assert f["fileKey"] == hashlib.sha256(name.encode()).hexdigest()
        assert f["batchId"] == sc.batch_id and f["ip"] in HOSTS
        # `ip` follows the latest assignment, whichever host's events were read first.
        assert (f["ip"], f["assignment"]) == sc.moved.get(name, (f["ip"], 0)), name
        assert f["createdAt"] is not None and f["updatedAt"] >= f["createdAt"]
        if f["terminalState"] == "done":
            assert [f[c] for c in FLAG_COLUMNS] == [1] * len(FLAG_COLUMNS)
            assert f["triageRoute"] == "stt" and f["finishedAt"] is not None
        elif f["terminalState"] == "skipped":
            assert (f["lidDone"], f["sttDone"], f["triageRoute"], f["triageRule"]) == (
                1,
                0,
                "skip",
                "short-call",
            )
        else:
            stage = sc.failed_stage[name]
            assert f["failedStage"] == stage and "HTTP 422" in f["failedError"]
            flags = {s.name: f[s.flag_column] for s in PIPELINE if s.flag_column is not None}
            assert flags == {s: int(STAGES.index(s) < STAGES.index(stage)) for s in flags}
    retried = [
        f for f in files.values() if f["failedStage"] == "ivr" and f["terminalState"] == "done"
    ]
    assert retried, "a file that failed and then succeeded is done"

    bs_cols = [c.name for c in batch_status.c if c.name != "id"]
    (batch,) = [dict(zip(bs_cols, row, strict=True)) for row in tables["batchStatus"]]
    assert {batch[c] for c in bs_cols if c.endswith("Status")} == {"Complete"}
    assert (batch["status"], batch["totalFiles"], batch["knownFiles"]) == ("Complete", n, n)
    assert (batch["doneFiles"], batch["skippedFiles"], batch["failedFiles"]) == (
        sc.terminal["done"],
        sc.terminal["skipped"],
        sc.terminal["failed"],
    )
    assert batch["completedAt"] is not None

    pl_cols = [c.name for c in processing_logs.c if c.name != "id"]
    logs = [dict(zip(pl_cols, row, strict=True)) for row in tables["processing_logs"]]
    assert {(r["call_id"], r["stage_name"], r["attempt"]) for r in logs} == sc.attempts
    assert len(logs) == len(sc.attempts)
    assert {r["status"] for r in logs} == {"success", "failure"}

    el_cols = [c.name for c in batch_execution_log.c if c.name != "id"]
    events = [dict(zip(el_cols, row, strict=True)) for row in tables["batchExecutionLog"]]
    kinds = Counter(r["eventType"] for r in events)
    assert kinds == {
        "stage_start": len(STAGES),
        "stage_complete": len(STAGES),
        "stage_progress": len(STAGES) * (n // interval),
        "file_error": sc.file_errors,
    }
    progress = sorted(
        (r["stage"], r["processedFiles"]) for r in events if r["eventType"] == "stage_progress"
    )
    assert progress == sorted((s, k) for s in STAGES for k in range(interval, n + 1, interval))
    # Final milestones (services/tracker/milestones.py): the k-th progress row of a stage is
    # stamped with the time its (k * interval)-th file got through, so times and counts
    # grow with k, the start comes first and the completion last; every row knows the total.
    for stage in STAGES:
        rows = sorted(
            (r for r in events if r["stage"] == stage and r["eventType"] != "file_error"),
            key=lambda r: (MILESTONE_ORDER[r["eventType"]], r["processedFiles"]),
        )
        assert [r["eventType"] for r in (rows[0], rows[-1])] == ["stage_start", "stage_complete"]
        assert {r["totalFiles"] for r in rows} == {n}
        for a, b in itertools.pairwise(rows):
            assert a["createdAt"] <= b["createdAt"]
            assert a["failedFiles"] <= b["failedFiles"] and a["skippedFiles"] <= b["skippedFiles"]
    assert len(tables["deadLetters"]) == 2
