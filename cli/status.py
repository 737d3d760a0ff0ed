"""`cofi status [BATCH]`: recent batches, or one batch's per-stage progress, from the tracker's
tables through the dashboard queries; `--watch` redraws until the batch is finished.

The arguments are declared in cli/batch_commands.py, so that other commands do not pay for
importing this module (SQLAlchemy, aiohttp, rich)."""

import argparse
import asyncio
import io
import json
import sys
from collections.abc import Callable
from datetime import datetime

from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import DBAPIError

from services.dashboard.app import utc_now
from services.dashboard.progress import (
    BatchProgress,
    BatchRow,
    StageProgress,
    format_eta,
    format_rate,
)
from services.dashboard.queries import DashboardReader
from shared.status import Status

BAR_WIDTH = 28
# Wider than any table `cofi status` draws: in a pipe each row stays one line, whole.
PIPE_WIDTH = 1000
STATUS_STYLE: dict[str, str] = {
    Status.COMPLETE: "green",
    Status.IN_PROGRESS: "cyan",
    Status.PENDING: "dim",
    Status.CANCELLED: "yellow",
}


def _time(t: datetime | None) -> str:
    return "—" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def _status(value: str) -> Text:
    return Text(value, style=STATUS_STYLE.get(value, ""))


def bar(stage: StageProgress, width: int = BAR_WIDTH) -> Text:
    """Finished and skipped files solid, failed and cancelled ones red, what is left shaded;
    the characters differ too, so the bar reads without colour."""
    total = max(stage.total, 1)
    ok = round(width * (stage.finished + stage.skipped) / total)
    bad = round(width * (stage.failed + stage.cancelled) / total)
    if stage.failed + stage.cancelled and not bad:
        bad = 1  # one failure out of 10,000 must still show
    ok = min(ok, width - bad)
    text = Text()
    text.append("█" * ok, style="green")
    text.append("▓" * bad, style="red")
    text.append("░" * (width - ok - bad), style="grey50")
    return text


def progress_view(p: BatchProgress) -> RenderableType:
    b = p.batch
    total = "?" if b.total_files is None else str(b.total_files)
    header = Text.assemble(
        ("batch ", "bold"),
        (b.batch_id, "bold"),
        "  ",
        _status(b.status),
        f"  files {b.known_files}/{total}  done {b.done}  skipped {b.skipped}"
        f"  failed {b.failed}"
        + (f"  cancelled {b.cancelled}" if b.cancelled else "")
        + f"  ETA {format_eta(p.eta_s)}",
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("stage")
    table.add_column("status")
    table.add_column("progress", no_wrap=True)
    table.add_column("ended", justify="right")
    table.add_column("%", justify="right")
    table.add_column("files/min", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("errors", justify="right")
    table.add_column("ETA", justify="right")
    for s in p.stages:
        table.add_row(
            s.stage,
            _status(s.status),
            bar(s),
            f"{s.ended}/{s.total}",
            f"{s.percent:.1f}",
            format_rate(s.files_per_min).removesuffix("/min"),
            Text(str(s.failed_here), style="red" if s.failed_here else ""),
            str(s.failed_attempts),
            format_eta(s.eta_s),
        )
    footer = Text(
        f"as of {_time(p.as_of)} UTC · failed: files that gave up at this stage (the bar "
        "also counts those that failed upstream) · errors: failed attempts, retried or final",
        style="dim",
    )
    return Group(header, table, footer)


def batches_view(rows: list[BatchRow]) -> RenderableType:
    if not rows:
        return Text("no batches in batchStatus yet")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("batch", "left"),
        ("status", "left"),
        ("files", "right"),
        ("done", "right"),
        ("skipped", "right"),
        ("failed", "right"),
        ("created", "left"),
        ("updated", "left"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for r in rows:
        table.add_row(
            r.batch_id,
            _status(r.status),
            f"{r.known_files}/{'?' if r.total_files is None else r.total_files}",
            str(r.done),
            str(r.skipped),
            str(r.failed),
            _time(r.created_at),
            _time(r.updated_at),
        )
    return table


def to_text(renderable: RenderableType, width: int = 120) -> str:
    """What a terminal of `width` columns would show, without colour (tests, pipes)."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def batches_json(rows: list[BatchRow]) -> str:
    return json.dumps({"batches": [r.model_dump(mode="json") for r in rows]}, indent=2)


def progress_line(p: BatchProgress) -> str:
    """The batch in one line, for a pipe: its counts, then each stage's ended/total."""
    b = p.batch
    total = "?" if b.total_files is None else str(b.total_files)
    stages = " ".join(f"{s.stage} {s.ended}/{s.total}" for s in p.stages)
    return (
        f"batch {b.batch_id} {b.status} files {b.known_files}/{total} done {b.done} "
        f"skipped {b.skipped} failed {b.failed}"
        + (f" cancelled {b.cancelled}" if b.cancelled else "")
        + f" ETA {format_eta(p.eta_s)} | {stages}"
    )


async def _poll(
    reader: DashboardReader, batch_id: str, clock: Callable[[], datetime]
) -> tuple[BatchProgress | None, RenderableType, str]:
    """The batch's progress (None while it is unknown or the database is away), drawn for a
    terminal and written as a line for a pipe."""
    try:
        progress = await reader.progress(batch_id, clock())
    except DBAPIError as exc:
        # A database that is away for a while must not end the watch.
        line = f"the database did not answer, retrying: {_first_line(exc)}"
        return None, Text(line), line
    if progress is None:
        line = f"waiting for the tracker to see batch {batch_id!r} …"
        return None, Text(line), line
    return progress, progress_view(progress), progress_line(progress)


async def watch(
    reader: DashboardReader,
    batch_id: str,
    interval_s: float,
    console: Console,
    clock: Callable[[], datetime] = utc_now,
) -> BatchProgress:
    """Redraw the batch's progress every `interval_s` until it is finished; returns the last.
    Where no one watches a screen (a pipe, a log), a line with the time, whenever the batch
    changed."""
    if not console.is_terminal:
        return await _watch_lines(reader, batch_id, interval_s, console, clock)
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            progress, view, _ = await _poll(reader, batch_id, clock)
            live.update(view)
            live.refresh()
            if progress is not None and progress.finished:
                return progress
            await asyncio.sleep(interval_s)


async def _watch_lines(
    reader: DashboardReader,
    batch_id: str,
    interval_s: float,
    console: Console,
    clock: Callable[[], datetime],
) -> BatchProgress:
    last = None
    while True:
        progress, _, line = await _poll(reader, batch_id, clock)
        if line != last:
            console.print(f"{_time(clock())} {line}", markup=False, highlight=False, soft_wrap=True)
            console.file.flush()
            last = line
        if progress is not None and progress.finished:
            return progress
        await asyncio.sleep(interval_s)


def _first_line(exc: Exception) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def run(ns: argparse.Namespace, database_url: str) -> int:
    from sqlalchemy.ext.asyncio import create_async_engine

    async def go() -> int:
        engine = create_async_engine(database_url)
        reader = DashboardReader(engine)
        console = Console()
        if not console.is_terminal:
            # A pipe has no width: rich would cut the tables at 80 columns.
            console = Console(width=PIPE_WIDTH)
        try:
            if ns.batch_id is None:
                rows = await reader.batches(ns.limit)
                if ns.json:
                    print(batches_json(rows))
                else:
                    console.print(batches_view(rows))
                return 0
            progress = await reader.progress(ns.batch_id, utc_now())
            if progress is None:
                # Not a wait: a mistyped id would wait forever.
                print(
                    f"cofi status: no batch {ns.batch_id!r} in batchStatus (cofi status lists "
                    "the batches; a batch appears once the tracker has read its first file)",
                    file=sys.stderr,
                )
                return 1
            if ns.watch:
                await watch(reader, ns.batch_id, ns.interval, console)
                return 0
            if ns.json:
                print(progress.model_dump_json(indent=2))
            else:
                console.print(progress_view(progress))
            return 0
        finally:
            await engine.dispose()

    return asyncio.run(go())  # cli/main.py turns a database that failed into one line
