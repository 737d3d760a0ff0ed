"""`cofi submit BATCH`: the upload system's side, through the upload client; a batch id already
used is refused (cli/batch_ids.py)."""

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from cli.errors import CliError, Exit
from cli.options import call_length_options, database_configured, engine, lengths, positive
from cli.options import settings as load
from services.tracker.settings import TrackerSettings

if TYPE_CHECKING:
    from cli.options import Subcommands


def add(sub: "Subcommands") -> None:
    p = sub.add_parser("submit", help="submit a batch, as the upload system does")
    p.add_argument(
        "batch_id", help="the new batch's id (the Kafka key of its events); never used before"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", type=Path, help="a folder of audio files")
    src.add_argument(
        "--synthetic", type=positive(int), metavar="N", help="make N synthetic WAV files"
    )
    p.add_argument("--corrupt", type=int, default=0, help="of the synthetic files, corrupt ones")
    p.add_argument("--short", type=int, default=0, help="of the synthetic files, short ones")
    call_length_options(p)
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(".cache/audio"),
        help="where --synthetic writes its files, in a folder per batch (default: %(default)s)",
    )
    p.set_defaults(func=submit)


def submit(ns: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cli.audio import make_batch
    from cli.upload import submit

    s = load(TrackerSettings, ns)
    _check_batch_id(ns.batch_id)
    if ns.folder:
        paths = _folder_files(ns.folder)
    asyncio.run(_refuse_a_used_id(ns, s))
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # Drawn only on a terminal: piped, the one line below is the whole output.
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        if not ns.folder:
            made = bar.add_task("making WAV files", total=ns.synthetic)
            paths = make_batch(
                ns.workdir / ns.batch_id,
                ns.synthetic,
                ns.corrupt,
                ns.short,
                lengths(ns),
                on_file=lambda n: bar.update(made, completed=n),
            )
        sent = bar.add_task(f"submitting {ns.batch_id}", total=len(paths))
        n = asyncio.run(
            submit(
                s.kafka,
                s.topics,
                ns.batch_id,
                paths,
                on_progress=lambda done: bar.update(sent, completed=done),
            )
        )
    print(f"submitted batch {ns.batch_id}: {n} files, then BatchClosed")
    return Exit.OK


def _check_batch_id(batch_id: str) -> None:
    from pydantic import ValidationError

    from shared.events import BatchClosed

    try:
        BatchClosed(batch_id=batch_id, file_count=0)
    except ValidationError as exc:
        reason = exc.errors(include_url=False, include_input=False)[0]["msg"]
        raise CliError(f"batch id {batch_id!r}: {reason}", code=Exit.USAGE) from None


async def _refuse_a_used_id(ns: argparse.Namespace, s: TrackerSettings) -> None:
    from cli.batch_ids import applied_offsets, batch_in_tables, batch_on_topic

    since: dict[int, int] | None = None
    if database_configured(ns):
        tables = engine(ns)
        try:
            in_tables = await batch_in_tables(tables, ns.batch_id)
        finally:
            await tables.dispose()
        if in_tables:
            raise _used(ns.batch_id, "the tracker's tables hold it")
        since = await applied_offsets(s.kafka, s.group_id, s.topics.uploads)
    if await batch_on_topic(s.kafka, s.topics.uploads, ns.batch_id, since):
        raise _used(ns.batch_id, f"{s.topics.uploads} holds uploads of it")


def _used(batch_id: str, where: str) -> CliError:
    return CliError(
        f"batch {batch_id!r} was submitted before ({where}); a batch is submitted once: "
        "send new files as a new batch, failed ones again with cofi retry"
    )


def _folder_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise CliError(f"--folder {folder} {what}", code=Exit.USAGE)
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    if not paths:
        raise CliError(f"--folder {folder} has no files", code=Exit.USAGE)
    return paths
