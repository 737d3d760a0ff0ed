"""`make demo`'s script on the embedded default: no DATABASE_URL, no database server."""

import os
import re
import sqlite3
import subprocess
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_runs_on_sqlite_and_says_where_to_look(kafka_bootstrap: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DB")}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": f"demo{uuid.uuid4().hex[:8]}",
        "TOPIC_REPLICATION_FACTOR": "1",
        "TOPIC_MIN_INSYNC_REPLICAS": "1",
    }
    run = subprocess.run(
        [str(REPO / "scripts/demo.sh"), "--files", "20", "--corrupt", "1", "--short", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    match = re.search(r"batch (demo-\S+) completed", run.stdout)
    assert match, run.stdout[-2000:]
    batch_id = match.group(1)
    assert "where to look:" in run.stdout
    assert f"cofi status {batch_id}" in run.stdout
    assert f"http://127.0.0.1:8080/batches/{batch_id}" in run.stdout
    # The tables live in the demo's SQLite file and stay there for `cofi status` and the page.
    with sqlite3.connect(REPO / ".cache/demo/cofi.db") as db:
        (files,) = db.execute(
            "SELECT COUNT(*) FROM fileDistribution WHERE batchId = ?", (batch_id,)
        ).fetchone()
    assert files == 20


def test_the_demo_script_refuses_an_unknown_database_kind() -> None:
    run = subprocess.run(
        [str(REPO / "scripts/demo.sh")],
        cwd=REPO,
        env=os.environ | {"DB": "postgres"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "DB must be sqlite or mariadb" in run.stderr
