"""`cofi demo`: one batch of synthetic audio through the whole pipeline, with progress."""

import asyncio
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cli.audio import CallLengths, make_batch
from cli.local_stack import PipelineConfig, create_topics, start_pipeline
from cli.processes import ProcessGroup
from cli.upload import submit
from services.dashboard.summary import BatchSummary, batch_summary, render


async def run_demo(
    config: PipelineConfig,
    files: int,
    corrupt: int,
    short: int,
    timeout_s: float,
    workdir: Path,
    lengths: CallLengths | None = None,
) -> bool:
    batch_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    lengths = lengths or CallLengths()
    audio = make_batch(workdir / "audio" / batch_id, files, corrupt, short, lengths)
    print(
        f"made {files} WAV files ({corrupt} corrupt, {short} short; call lengths lognormal, "
        f"median {lengths.median_s:g} s, sigma {lengths.sigma:g}, at most {lengths.cap_s:g} s) "
        f"in {audio[0].parent}"
    )
    await create_topics(config)
    from services.tracker.migrate import migrate

    await migrate(config.database_url)
    group = start_pipeline(config, workdir / "logs" / batch_id)
    print(f"services running, logs in {group.log_dir}")
    engine = create_async_engine(config.database_url)
    try:
        t0 = time.monotonic()
        await submit(config.bootstrap, config.settings().topics, batch_id, audio)
        print(f"submitted batch {batch_id}: {files} files and BatchClosed")
        summary = await _watch(engine, batch_id, group, timeout_s)
        elapsed = time.monotonic() - t0
        print()
        if summary is not None:
            await _show_progress(engine, batch_id)
            print(render(summary))
        ok = summary is not None and summary.finished
        verdict = "completed" if ok else "did NOT complete"
        print(f"batch {batch_id} {verdict} in {elapsed:.1f}s")
        print(where_to_look(batch_id, config.database_url))
        return ok
    finally:
        await engine.dispose()
        group.stop_all()


async def _watch(
    engine: AsyncEngine, batch_id: str, group: ProcessGroup, timeout_s: float
) -> BatchSummary | None:
    deadline = time.monotonic() + timeout_s
    summary: BatchSummary | None = None
    last = ""
    while time.monotonic() < deadline:
        dead = group.dead()
        if dead:
            names = ", ".join(f"{p.name} (see {p.log_path})" for p in dead)
            print(f"\nservice exited unexpectedly: {names}")
            return summary
        summary = await batch_summary(engine, batch_id)
        if summary is not None:
            line = _progress_line(summary)
            if line != last:
                print(line, flush=True)
                last = line
            if summary.finished:
                return summary
        await asyncio.sleep(1.0)
    print(f"\ntimed out after {timeout_s:.0f}s")
    return summary


async def _show_progress(engine: AsyncEngine, batch_id: str) -> None:
    """The same per-stage view as `cofi status BATCH`, from the dashboards' queries."""
    from rich.console import Console

    from cli.status import progress_view
    from services.dashboard.app import utc_now
    from services.dashboard.queries import DashboardReader

    progress = await DashboardReader(engine).progress(batch_id, utc_now())
    if progress is not None:
        # Piped output (CI, logs) gets a readable width instead of rich's 80 columns.
        Console(width=None if sys.stdout.isatty() else 130).print(progress_view(progress))


def _progress_line(s: BatchSummary) -> str:
    total = s.total_files or s.files_seen or 1
    stages = " ".join(f"{line.stage}:{line.done + line.failed}/{total}" for line in s.stages)
    return f"[{s.status}] {stages} terminal={sum(s.terminal.values())}/{total}"


def where_to_look(batch_id: str, database_url: str) -> str:
    """What a newcomer runs next: the tables stay, so the page and `cofi status` still read them."""
    env = f"DATABASE_URL='{database_url}'"
    return "\n".join(
        (
            "where to look:",
            f"  {env} .venv/bin/cofi status {batch_id}",
            f"  {env} .venv/bin/cofi run web   # then open http://127.0.0.1:8080/batches/{batch_id}",
        )
    )
