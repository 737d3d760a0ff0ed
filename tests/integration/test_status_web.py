"""`cofi status` and the progress page against a batch the tracker wrote (MariaDB, SQLite)."""

import asyncio
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from aiohttp import web
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cli.status import watch
from services.dashboard.app import make_app
from services.dashboard.queries import DashboardReader
from services.tracker.migrate import migrate
from shared.stages import STAGES
from tests.kafka_helpers import wait_until
from tests.tracker_scenario import HOSTS, T0, Scenario, build_scenario, tracked, tracker_for
from tests.web_helpers import free_port

BATCH = "batch-300"


async def _engine(url: str) -> AsyncEngine:
    await migrate(url)
    return create_async_engine(url)


def _halves(sc: Scenario) -> tuple[list, list]:  # type: ignore[type-arg]
    events = tracked(sc)
    # Up to the failures that interleave after lid: the batch is well under way, not finished.
    cut = len(events) * 2 // 3
    return events[:cut], events[cut:]


async def test_progress_of_a_finished_batch_agrees_with_its_files_on_mariadb(
    mariadb_url: str,
) -> None:
    await _finished_batch_agrees(mariadb_url)


async def test_progress_of_a_finished_batch_agrees_with_its_files_on_sqlite(
    sqlite_url: str,
) -> None:
    await _finished_batch_agrees(sqlite_url)


async def _finished_batch_agrees(db_url: str) -> None:
    engine = await _engine(db_url)
    try:
        sc = build_scenario(BATCH)
        await tracker_for(engine).apply_events(tracked(sc))
        reader = DashboardReader(engine)
        page = await reader.page(BATCH, T0 + timedelta(hours=1))
        assert page is not None
        p = page.progress
        assert p.finished and p.eta_s == 0.0
        assert (p.batch.done, p.batch.skipped, p.batch.failed) == (
            sc.terminal["done"],
            sc.terminal["skipped"],
            sc.terminal["failed"],
        )
        assert [s.stage for s in p.stages] == list(STAGES)
        assert {(s.status, s.ended, s.total) for s in p.stages} == {("Complete", 300, 300)}
        failed_at: dict[str, int] = {stage: 0 for stage in STAGES}
        for stage in sc.failed_stage.values():
            failed_at[stage] += 1
        assert {s.stage: s.failed_here for s in p.stages} == failed_at
        assert all(s.files_per_min and s.files_per_min > 0 for s in p.stages)
        attempts = {s.stage: s.attempts for s in p.stages}
        assert attempts["denoise"] == len({a for a in sc.attempts if a[1] == "denoise"})

        assert {h.host for h in page.hosts} >= set(HOSTS)
        gpu = {h.host: h for h in page.hosts if h.host in HOSTS}
        assert all(h.files > 0 and h.files_per_min for h in gpu.values())
        assert len(page.failed_files) == sc.terminal["failed"]
        assert {f.file for f in page.failed_files} == set(sc.failed_stage)
        assert all("HTTP 422" in (f.error or "") for f in page.failed_files)
        assert page.attempt_errors and all(a.error for a in page.attempt_errors)

        (row,) = await reader.batches()
        assert (row.batch_id, row.status, row.finished) == (BATCH, "Complete", True)
        assert await reader.page("no-such-batch", T0) is None
    finally:
        await engine.dispose()


async def test_watch_redraws_until_the_batch_finishes_then_returns(mariadb_url: str) -> None:
    engine = await _engine(mariadb_url)
    try:
        sc = build_scenario(BATCH)
        first, rest = _halves(sc)
        tracker = tracker_for(engine)
        await tracker.apply_events(first)
        out = io.StringIO()
        console = Console(file=out, force_terminal=True, width=120, color_system=None)
        task = asyncio.create_task(
            watch(DashboardReader(engine), BATCH, 0.1, console, clock=lambda: T0)
        )

        def in_progress_shown() -> bool:
            assert not task.done(), "watch returned before the batch finished"
            return "InProgress" in out.getvalue()

        await wait_until(in_progress_shown, 30, lambda: f"InProgress in {out.getvalue()}")
        assert not task.done()

        await tracker.apply_events(rest)
        last = await asyncio.wait_for(task, timeout=30)
        assert last.finished and last.batch.status == "Complete"
        assert "Complete" in out.getvalue()
    finally:
        await engine.dispose()


def _cofi(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "status", *args],
        env={**os.environ, "DATABASE_URL": url, "COLUMNS": "140"},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cofi_status_lists_batches_and_prints_one_json_document(mariadb_url: str) -> None:
    engine = await _engine(mariadb_url)
    try:
        sc = build_scenario(BATCH)
        first, rest = _halves(sc)
        await tracker_for(engine).apply_events(first)

        done = await asyncio.to_thread(_cofi, mariadb_url, BATCH, "--json")
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["batch"]["batch_id"] == BATCH and doc["finished"] is False
        assert [s["stage"] for s in doc["stages"]] == list(STAGES)
        denoise = doc["stages"][0]
        assert denoise["ended"] > 0 and {"files_per_min", "eta_s", "failed_here"} <= set(denoise)

        listed = await asyncio.to_thread(_cofi, mariadb_url, "--json")
        assert [b["batch_id"] for b in json.loads(listed.stdout)["batches"]] == [BATCH]
        table = await asyncio.to_thread(_cofi, mariadb_url)
        assert BATCH in table.stdout and "300/300" in table.stdout

        missing = await asyncio.to_thread(_cofi, mariadb_url, "nope")
        assert missing.returncode == 1 and "no batch 'nope'" in missing.stderr
        no_db = make_url(mariadb_url).set(database="cofi_no_such_database")
        broken = await asyncio.to_thread(_cofi, no_db.render_as_string(hide_password=False))
        assert broken.returncode == 3 and "cofi_no_such_database" in broken.stderr
        assert "cofi migrate" in broken.stderr and "Traceback" not in broken.stderr

        await tracker_for(engine).apply_events(rest)
        # Finished already: --watch draws once and exits.
        watched = await asyncio.to_thread(_cofi, mariadb_url, BATCH, "--watch", "--interval", "0.1")
        assert watched.returncode == 0, watched.stderr
        assert "Complete" in watched.stdout and "llm2" in watched.stdout
    finally:
        await engine.dispose()


@pytest.fixture
async def page_url(mariadb_url: str) -> AsyncIterator[tuple[str, Scenario]]:
    engine = await _engine(mariadb_url)
    sc = build_scenario(BATCH)
    await tracker_for(engine).apply_events(tracked(sc))
    runner = web.AppRunner(make_app(DashboardReader(engine), refresh_s=5))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", sc
    finally:
        await runner.cleanup()
        await engine.dispose()


async def test_the_page_lists_batches_and_shows_a_batchs_stages_hosts_and_failures(
    page_url: tuple[str, Scenario],
) -> None:
    url, sc = page_url
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        index = await client.get("/")
        assert index.status_code == 200 and f'href="/batches/{BATCH}"' in index.text
        page = await client.get(f"/batches/{BATCH}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for stage in STAGES:
            assert f'data-stage="{stage}"' in page.text
        for host in HOSTS:
            assert f"<td>{host}</td>" in page.text
        for name in list(sc.failed_stage)[:5]:
            assert name in page.text
        assert "gave up: HTTP 422" in page.text and "HTTP 503 from model" in page.text
        missing = await client.get("/batches/nope")
        assert missing.status_code == 404 and "no batch" in missing.text


# A database that is away: tests/integration/test_web_read_only.py.
