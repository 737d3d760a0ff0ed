"""`cofi status`, `cofi export` and `cofi cancel`: watch a batch, take its results, or stop
it."""

import argparse
import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

from cli.errors import CliError, Exit
from cli.options import database_url, engine, json_option, positive, settings
from shared.settings import CommonSettings

if TYPE_CHECKING:
    from cli.options import Subcommands


def add(sub: "Subcommands") -> None:
    p = sub.add_parser(
        "status",
        help="recent batches, or a batch's per-stage progress (rates, errors, ETA); "
        "--watch redraws until it is finished (in a pipe: a line per change)",
    )
    p.add_argument("batch_id", nargs="?", help="a batch; without one, the recent batches")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    out.add_argument(
        "--watch",
        action="store_true",
        help="redraw until the batch is finished; in a pipe, print a line whenever it changes",
    )
    p.add_argument("--interval", type=positive(float), default=2.0, help="seconds between redraws")
    p.add_argument(
        "--limit", type=positive(int), default=20, help="how many recent batches to list"
    )
    p.set_defaults(func=status)

    p = sub.add_parser(
        "export", help="write a batch's results, one row per file, as CSV or Parquet"
    )
    p.add_argument("batch_id", help="the batch to export")
    p.add_argument(
        "-o", "--output", type=Path, help="the file to write (default: ./<batch>.<format>)"
    )
    p.add_argument(
        "--format",
        choices=("csv", "parquet"),
        help="default: from the output's suffix, else csv",
    )
    p.set_defaults(func=export)

    p = sub.add_parser("cancel", help="cancel a batch: stages stop starting its files")
    p.add_argument("batch_id", help="the batch to cancel")
    p.add_argument(
        "--reason",
        default="cancelled by an operator",
        help="why, as the tracker records it (default: %(default)s)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="cancel even if the tracker has not seen the batch (yet)",
    )
    json_option(p)
    p.set_defaults(func=cancel)


def status(ns: argparse.Namespace) -> int:
    from cli.status import run

    return run(ns, database_url(ns))


def unknown_batch(batch_id: str) -> CliError:
    return CliError(
        f"no batch {batch_id!r} in the tracker's database (cofi status lists the batches it "
        "knows; a batch appears once the tracker has read its first file)"
    )


async def require_known(ns: argparse.Namespace, hint: str = "") -> None:
    """The batch `ns.batch_id` is in the tracker's tables, or a `CliError` says it is not."""
    from cli.batch_ids import batch_in_tables

    tables = engine(ns)
    try:
        known = await batch_in_tables(tables, ns.batch_id)
    finally:
        await tables.dispose()
    if not known:
        raise CliError(f"{unknown_batch(ns.batch_id)}{hint}")


def export(ns: argparse.Namespace) -> int:
    from cli.export import Format, UnknownBatch, export_batch
    from services.tracker.settings import TrackerSettings

    fmt: Format = ns.format or (
        "parquet" if ns.output and ns.output.suffix == ".parquet" else "csv"
    )
    output = ns.output or Path(f"{ns.batch_id}.{fmt}")
    redact = settings(TrackerSettings, ns).redact_fields

    async def go() -> int:
        tables = engine(ns)
        try:
            return await export_batch(tables, ns.batch_id, output, fmt, redact)
        except UnknownBatch as exc:
            raise CliError(str(exc)) from None
        finally:
            await tables.dispose()

    written = asyncio.run(go())
    print(f"wrote {written} files of batch {ns.batch_id} to {output} ({fmt})")
    return Exit.OK


def cancel(ns: argparse.Namespace) -> int:
    from cli.dead_letters import cancellation, publish

    s = settings(CommonSettings, ns)
    if not ns.force:
        asyncio.run(require_known(ns, "; --force cancels it all the same"))
    asyncio.run(publish(s.kafka, [cancellation(ns.batch_id, ns.reason, s.topics)]))
    if ns.json:
        print(json.dumps({"batch_id": ns.batch_id, "cancelled": True, "reason": ns.reason}))
    else:
        print(f"batch {ns.batch_id} cancelled: stages stop starting its files")
    return Exit.OK
