"""One batch of 500 files through all eight hops, every service a separate process."""

import uuid
from pathlib import Path

from sqlalchemy import text

from cli.audio import make_batch
from cli.upload import submit
from shared.stages import STAGES
from tests.pipeline_harness import running_pipeline

FILES, CORRUPT, SHORT = 500, 5, 5


async def test_a_batch_flows_from_upload_to_the_tracker_tables(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    batch = f"e2e-{uuid.uuid4().hex[:8]}"
    paths = make_batch(tmp_path / "audio", FILES, corrupt=CORRUPT, short=SHORT)
    corrupt_names = {p.name for p in paths[:CORRUPT]}
    short_names = {p.name for p in paths[CORRUPT : CORRUPT + SHORT]}

    async with running_pipeline(
        topic_prefix, mariadb_url, tmp_path / "logs", kafka_bootstrap
    ) as pipeline:
        await submit(kafka_bootstrap, pipeline.config.settings().topics, batch, paths)
        summary = await pipeline.wait_finished(batch, timeout_s=300)

        async with pipeline.engine.connect() as conn:
            files = (
                (
                    await conn.execute(
                        text("SELECT * FROM fileDistribution WHERE batchId = :b"), {"b": batch}
                    )
                )
                .mappings()
                .all()
            )
            status = (
                (
                    await conn.execute(
                        text("SELECT * FROM batchStatus WHERE batchId = :b"), {"b": batch}
                    )
                )
                .mappings()
                .one()
            )
            logs = (
                (
                    await conn.execute(
                        text("SELECT * FROM processing_logs WHERE batch_id = :b"), {"b": batch}
                    )
                )
                .mappings()
                .all()
            )
            events = (
                await conn.execute(
                    text(
                        "SELECT stage, eventType, COUNT(*) AS n FROM batchExecutionLog WHERE batchId = :b "
                        "GROUP BY stage, eventType"
                    ),
                    {"b": batch},
                )
            ).all()

    # Every file of the batch: one row, with its host, in exactly one terminal state.
    assert summary.total_files == FILES
    assert len(files) == FILES
    assert len({f["file"] for f in files}) == FILES
    assert all(f["ip"] in ("127.0.0.2", "127.0.0.3") for f in files)
    assert all(f["terminalState"] in ("done", "skipped", "failed") for f in files)

    flags = ("denoiseDone", "ivrDone", "lidDone", "sttDone", "llm1Done", "llm2Done")
    done = [f for f in files if f["terminalState"] == "done"]
    assert len(done) > FILES * 0.7
    assert all(all(f[c] == 1 for c in flags) for f in done)

    # Corrupt audio fails at the stage that read it, is logged with the error, is not done.
    by_name = {f["file"]: f for f in files}
    for name in corrupt_names:
        row = by_name[name]
        assert (row["terminalState"], row["failedStage"]) == ("failed", "denoise")
        assert row["denoiseDone"] == 0
    failure_logs = [r for r in logs if r["call_id"] in corrupt_names and r["status"] == "failure"]
    assert {r["call_id"] for r in failure_logs} == corrupt_names
    assert all("undecodable" in (r["error_message"] or "") for r in failure_logs)

    # Short calls are triaged out, and marked as such.
    for name in short_names:
        row = by_name[name]
        assert (row["terminalState"], row["triageRoute"], row["triageRule"]) == (
            "skipped",
            "skip",
            "too_short",
        )
        assert row["lidDone"] == 1 and row["sttDone"] == 0

    # One processing_logs row per attempt, for every stage that ran.
    assert len({r["attemptKey"] for r in logs}) == len(logs)
    assert {r["stage_name"] for r in logs} >= set(STAGES)

    # batchStatus: every stage Complete, the batch finished.
    for column in (
        "dbInsertionStatus",
        "denoiseStatus",
        "ivrStatus",
        "lidStatus",
        "triagingStatus",
        "sttStatus",
        "llm1Status",
        "llm2Status",
    ):
        assert status[column] == "Complete", column
    assert status["status"] == "Complete"
    assert (status["doneFiles"] + status["skippedFiles"] + status["failedFiles"]) == FILES

    # batchExecutionLog: start, progress and complete events for each stage.
    seen = {(stage, kind): n for stage, kind, n in events}
    for stage in STAGES:
        assert seen.get((stage, "stage_start")) == 1, stage
        assert seen.get((stage, "stage_complete")) == 1, stage
        assert seen.get((stage, "stage_progress"), 0) >= 1, stage
    assert seen.get(("denoise", "file_error")) == CORRUPT
