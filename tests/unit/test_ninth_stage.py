"""A ninth stage added to a copy of the table: everything derived from the table follows.

The copy is the project's `shared/` and `services/` in a temporary folder, with one row added to
`shared/pipeline.py` (a GPU stage `diarize` between stt and llm1) and its name added to the
`Literal` types of `shared/stages.py`, as ARCHITECTURE.md's "Adding a stage" says. A fresh
interpreter imports the copy and reports what it derives; the test asserts the new stage is in
each place, in flow order.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
STT_ROW = re.compile(r'^( +)StageSpec\("stt",.*\),\n', re.MULTILINE)
DIARIZE_ROW = (
    'StageSpec("diarize", "gpu_stage", True, "diarizeStatus", "diarizeDone", "diarizeDone"),'
)

# What the copy derives, as JSON: topics, the tracker's columns, the dashboard summary's stage
# lines (its progress rows, read from a database the tracker's tables built) and status words.
PROBE = """
import asyncio, json
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine
from shared import pipeline
from shared.topics import Topics
from services.tracker.tables import batch_status, file_distribution, metadata
from services.dashboard.summary import batch_summary

async def summary():
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(insert(batch_status).values(
            batchId="b", status="sttDone", diarizeStatus="InProgress", totalFiles=2))
        for name, diarized in (("f1", 1), ("f2", 0)):
            await conn.execute(insert(file_distribution).values(
                batchId="b", fileKey=name, file=name, ip="h1", sttDone=1,
                diarizeDone=diarized))
    found = await batch_summary(engine, "b")
    await engine.dispose()
    return [(s.stage, s.status, s.done) for s in found.stages]

t = Topics("cofi")
print(json.dumps({
    "stages": [row.name for row in pipeline.PIPELINE],
    "topics": t.all_topics(["h1"]),
    "after_stt": pipeline.output_topic("stt", t, "h1"),
    "after_diarize": pipeline.output_topic("diarize", t, "h1"),
    "skipped": [row.name for row in pipeline.skipped_by("triage", "skip")],
    "flag_columns": [c.name for c in file_distribution.c if c.name.endswith("Done")],
    "status_columns": [c.name for c in batch_status.c if c.name.endswith("Status")],
    "batch_statuses": list(pipeline.BATCH_STATUSES),
    "summary": asyncio.run(summary()),
}))
"""


def _copy_with_diarize(to: Path, *, literals: bool = True) -> Path:
    for package in ("shared", "services"):
        shutil.copytree(ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__"))
    table = to / "shared" / "pipeline.py"
    text, n = STT_ROW.subn(lambda m: f"{m.group(0)}{m.group(1)}{DIARIZE_ROW}\n", table.read_text())
    assert n == 1, "shared/pipeline.py: the stt row is not one line of the table any more"
    table.write_text(text)
    if literals:
        stages = to / "shared" / "stages.py"
        text = stages.read_text()
        for old, new in (
            ('"stt", "llm1"', '"stt", "diarize", "llm1"'),
            ('"lid", "stt"]', '"lid", "stt", "diarize"]'),
        ):
            assert old in text, f"shared/stages.py: {old} not found"
            text = text.replace(old, new)
        stages.write_text(text)
    return to


def _probe(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_ninth_stage_reaches_topics_columns_progress_rows_and_status_words(
    tmp_path: Path,
) -> None:
    done = _probe(_copy_with_diarize(tmp_path))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["stages"][5:8] == ["stt", "diarize", "llm1"]
    assert "cofi.diarize.h1" in got["topics"]
    assert got["topics"].index("cofi.stt.h1") < got["topics"].index("cofi.diarize.h1")
    assert got["after_stt"] == "cofi.diarize.h1" and got["after_diarize"] == "cofi.llm1"
    assert got["skipped"] == ["stt", "diarize", "llm1", "llm2"]
    assert "diarizeDone" in got["flag_columns"]
    statuses = got["status_columns"]
    assert statuses.index("sttStatus") + 1 == statuses.index("diarizeStatus")
    words = got["batch_statuses"]
    assert words[words.index("sttDone") + 1] == "diarizeDone"
    stt, diarize, llm1 = got["summary"][4:7]
    assert (stt[0], diarize, llm1[0]) == ("stt", ["diarize", "InProgress", 1], "llm1")


def test_a_stage_missing_from_the_literal_types_fails_at_import(tmp_path: Path) -> None:
    done = _probe(_copy_with_diarize(tmp_path, literals=False))
    assert done.returncode != 0
    assert "shared/stages.py" in done.stderr and "disagrees with PIPELINE" in done.stderr
