"""`cofi retry BATCH`: send a batch's failed files back to their stage, and replay its dead
letters that now decode (cli/dead_letters.py, cli/replay.py)."""

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from cli.batch_commands import require_known
from cli.errors import Exit
from cli.options import engine, json_option, settings
from services.tracker.settings import TrackerSettings
from shared.stages import STAGES

if TYPE_CHECKING:
    from cli.options import Subcommands


def add(sub: "Subcommands") -> None:
    p = sub.add_parser(
        "retry",
        help="send a batch's failed files back to their stage, and replay its dead letters "
        "that now decode",
    )
    p.add_argument("batch_id", help="the batch whose failed files and dead letters to send back")
    p.add_argument(
        "--stage",
        choices=STAGES,
        help="only files that failed at this stage (dead letters are left: they have no stage)",
    )
    p.add_argument("--file", help="only this file")
    p.add_argument(
        "--reroute",
        action="store_true",
        help="GPU-stage failures: hand the files to the distributor for another host (they "
        "restart at denoise there) instead of their own host",
    )
    p.add_argument(
        "--again",
        action="store_true",
        help="also send back the failures and dead letters an earlier retry already sent (a "
        "retried file that never ended: without it, each is sent back once)",
    )
    json_option(p)
    p.set_defaults(func=retry)


async def _finished_files(ns: argparse.Namespace) -> list[str]:
    from sqlalchemy import text

    tables = engine(ns)
    try:
        async with tables.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT file FROM fileDistribution WHERE batchId = :b "
                    "AND terminalState IN ('done', 'skipped')"
                ),
                {"b": ns.batch_id},
            )
            return [r.file for r in rows]
    finally:
        await tables.dispose()


def retry(ns: argparse.Namespace) -> int:
    from cli.retry_batch import retry_batch

    s = settings(TrackerSettings, ns)

    async def go() -> dict[str, Any]:
        await require_known(ns)
        return await retry_batch(
            s.kafka,
            s.topics,
            ns.batch_id,
            stage=ns.stage,
            file=ns.file,
            finished=await _finished_files(ns),
            reroute=ns.reroute,
            again=ns.again,
        )

    done = asyncio.run(go())
    if ns.json:
        print(json.dumps(done, indent=2))
        return Exit.OK
    for reason in done["not_retried"]:
        print(f"not retried: {reason}", file=sys.stderr)
    where = "the distributor for another host" if ns.reroute else "their stage"
    print(f"sent {len(done['sent'])} files of batch {ns.batch_id} back to {where}")
    if done["already_retried"]:
        n = len(done["already_retried"])
        print(f"skipped {n} failed files of batch {ns.batch_id}: sent back by an earlier retry")
    if done["replayed"]:
        print(f"replayed {len(done['replayed'])} dead letters of batch {ns.batch_id}")
    if done["already_replayed"]:
        n = len(done["already_replayed"])
        print(f"skipped {n} dead letters of batch {ns.batch_id}: replayed by an earlier retry")
    return Exit.OK
