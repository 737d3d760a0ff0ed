"""The progress page in headless Chromium, served for a batch running through every service.

Screenshots are kept under reports/artifacts/; `make screenshots` runs this test and copies
them to docs/ (docs/web-page.png, docs/web-file.png).
"""

import asyncio
import re
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
from sqlalchemy import text

from cli.audio import make_batch
from cli.processes import service_argv
from cli.upload import submit
from services.dashboard.queries import STAGE_FILES_PER_MINUTE
from shared.stages import STAGES
from tests.kafka_helpers import wait_until
from tests.pipeline_harness import TWO_SECOND_CALLS, running_pipeline
from tests.web_helpers import dump_dom, free_port, screenshot

ARTIFACTS = Path(__file__).resolve().parents[2] / "reports" / "artifacts"
FILES, CORRUPT = 200, 4
STAGE_POINT = re.compile(r'data-series="([^"]+)" data-minute="([^"]+)" data-files="(\d+)"')


async def _wait_for_page(url: str, timeout_s: float = 120.0) -> None:
    """Until the page knows the batch and has measured a stage's rate (after a few seconds
    of work), so the running screenshot shows rates and ETAs; on a machine fast enough to
    finish the batch sooner, until it is complete."""
    status: int | None = None
    async with httpx.AsyncClient(timeout=10) as client:

        async def shown() -> bool:
            nonlocal status
            r = await client.get(url)
            status = r.status_code
            measured = "/min</td>" in r.text or 's-Complete">Complete</span></h1>' in r.text
            return r.status_code == 200 and 'data-stage="denoise"' in r.text and measured

        await wait_until(shown, timeout_s, lambda: f"{url} (last {status})", interval_s=0.2)


async def test_the_progress_page_shows_a_running_batch_in_chromium(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    batch = f"page-{uuid.uuid4().hex[:6]}"
    paths = make_batch(tmp_path / "audio", FILES, corrupt=CORRUPT, lengths=TWO_SECOND_CALLS)
    corrupt = [p.name for p in paths[:CORRUPT]]
    port = free_port()
    async with running_pipeline(
        topic_prefix,
        mariadb_url,
        tmp_path / "logs",
        kafka_bootstrap,
        latency_scale=1.0,
        extra_env={"WEB_HOST": "127.0.0.1", "WEB_PORT": str(port), "WEB_REFRESH_S": "2"},
    ) as pipeline:
        pipeline.group.start("web", service_argv("web"))
        await asyncio.to_thread(
            pipeline.group.wait_for_log, "web", "progress page ready", timeout_s=60
        )
        base = f"http://127.0.0.1:{port}"
        await submit(kafka_bootstrap, pipeline.config.settings().topics, batch, paths)
        page = f"{base}/batches/{batch}"
        await _wait_for_page(page)

        running = await asyncio.to_thread(dump_dom, page, tmp_path / "chromium")
        assert f"Batch {batch}" in running
        for stage in STAGES:
            assert f'data-stage="{stage}"' in running
        await asyncio.to_thread(
            screenshot, page, ARTIFACTS / "web-page-running.png", tmp_path / "chromium"
        )

        await pipeline.wait_finished(batch, timeout_s=300)
        finished = await asyncio.to_thread(dump_dom, page, tmp_path / "chromium")
        assert 'class="status s-Complete">Complete' in finished
        assert finished.count(f'<td class="num">{FILES}/{FILES}</td>') == len(STAGES)
        for name in corrupt:
            assert name in finished, f"failed file {name} not on the page"
        for host in ("127.0.0.2", "127.0.0.3"):
            assert f"<td>{host}</td>" in finished
        index = await asyncio.to_thread(dump_dom, base + "/", tmp_path / "chromium")
        assert f'href="/batches/{batch}"' in index
        await asyncio.to_thread(screenshot, page, ARTIFACTS / "web-page.png", tmp_path / "chromium")

        # The chart draws what the tables say: each stage's files per minute from the view.
        async with pipeline.engine.connect() as conn:
            rows = (await conn.execute(text(STAGE_FILES_PER_MINUTE), {"batch": batch})).all()
        said = {(r[1], f"{r[0]:%Y-%m-%d %H:%M}"): int(r[2]) for r in rows}
        chart = finished[finished.index('id="chart-stages"') : finished.index('id="chart-hosts"')]
        drawn = {(s, m): int(n) for s, m, n in STAGE_POINT.findall(chart)}
        assert said and {k: v for k, v in drawn.items() if v} == said
        assert sum(drawn.values()) == sum(said.values())
        assert 'id="failure-reasons"' in finished and "undecodable audio" in finished

        # A failed file's journey: the stage it failed at, with host and error.
        failed_page = f"{base}/batches/{batch}/files/{quote(corrupt[0])}"
        journey = await asyncio.to_thread(dump_dom, failed_page, tmp_path / "chromium")
        assert f"File {corrupt[0]}" in journey and "failed at denoise" in journey
        assert 'data-stage="denoise"' in journey and "422" in journey
        # A file that went all the way: its transcript and the LLM's answers are shown.
        done_name = paths[-1].name
        done_page = f"{base}/batches/{batch}/files/{quote(done_name)}"
        journey = await asyncio.to_thread(dump_dom, done_page, tmp_path / "chromium")
        assert "transcript" in journey or "triage: skip" in journey
        await asyncio.to_thread(
            screenshot, done_page, ARTIFACTS / "web-file.png", tmp_path / "chromium"
        )
        found = await asyncio.to_thread(
            dump_dom, f"{base}/search?q={quote(corrupt[0])}", tmp_path / "chromium"
        )
        assert f'href="/batches/{batch}/files/{quote(corrupt[0])}"' in found
