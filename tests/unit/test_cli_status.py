"""`cofi status` where no one watches a screen: a pipe gets whole rows and, with `--watch`, a
line whenever the batch changed."""

import asyncio
import io
from datetime import datetime

from rich.console import Console

from cli.status import PIPE_WIDTH, batches_view, progress_line, watch
from services.dashboard.progress import BatchProgress, BatchRow, StageProgress
from shared.stages import STAGES

NOW = datetime(2026, 1, 15, 10, 0, 30)


def _progress(done: int, status: str = "InProgress", batch_id: str = "b-1") -> BatchProgress:
    row = BatchRow(
        batch_id=batch_id,
        status=status,
        total_files=4,
        known_files=4,
        done=done,
        skipped=0,
        failed=0,
        cancelled=0,
        created_at=NOW,
        updated_at=NOW,
    )
    stages = [StageProgress(stage=s, status=status, finished=done, total=4) for s in STAGES]
    return BatchProgress(batch=row, stages=stages, eta_s=None, as_of=NOW)


class Reader:
    """The dashboard reader's `progress`, answering from a script of polls."""

    def __init__(self, polls: list[BatchProgress | None]) -> None:
        self.polls = polls

    async def progress(self, batch_id: str, now: datetime) -> BatchProgress | None:
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]


def test_watch_in_a_pipe_prints_a_line_per_change_and_returns_when_finished() -> None:
    polls = [None, _progress(1), _progress(1), _progress(3), _progress(4, "Complete")]
    out = io.StringIO()
    console = Console(file=out, width=80)  # not a terminal
    last = asyncio.run(watch(Reader(polls), "b-1", 0.001, console, clock=lambda: NOW))  # type: ignore[arg-type]
    assert last.batch.status == "Complete"
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # the repeated poll printed nothing
    assert "waiting for the tracker to see batch 'b-1'" in lines[0]
    assert lines[1].startswith("2026-01-15 10:00:30 batch b-1 InProgress files 4/4 done 1")
    assert "Complete" in lines[3] and f"{STAGES[-1]} 4/4" in lines[3]
    assert all(len(line) > 80 for line in lines[1:])  # whole, not cut at the console's width


def test_a_line_names_each_stage_with_its_ended_and_total() -> None:
    line = progress_line(_progress(2))
    assert all(f"{s} 2/4" in line for s in STAGES)


def test_batches_in_a_pipe_are_not_cut_at_80_columns() -> None:
    long_id = "batch-" + "x" * 58
    rows = [_progress(4, "Complete", batch_id=long_id).batch]
    out = io.StringIO()
    Console(file=out, width=PIPE_WIDTH).print(batches_view(rows))
    [row] = [line for line in out.getvalue().splitlines() if long_id in line]
    assert "Complete" in row and "2026-01-15 10:00:30" in row
