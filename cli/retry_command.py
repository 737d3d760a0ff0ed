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
    from cli.dead_letters import plan_retry, publish, read_dead_letter_topic
    from cli.replay import plan_replays, replay_marks

    s = settings(TrackerSettings, ns)

    async def go() -> dict[str, Any]:
        await require_known(ns)
        finished = await _finished_files(ns)
        found = await read_dead_letter_topic(s.kafka, s.topics.failed)
        retried = set() if ns.again else found.replayed
        plan = plan_retry(
            found.failures,
            s.topics,
            ns.batch_id,
            ns.stage,
            ns.file,
            finished,
            reroute=ns.reroute,
            at=found.failed_at,
            retried=retried,
        )
        letters = [] if ns.stage else found.letters
        replay = plan_replays(letters, ns.batch_id, ns.file, finished, retried)
        raw = [(r.topic, r.key, r.value) for r in replay.replays]
        marks = replay_marks(replay.replays, found.partitions, s.topics.failed, ns.batch_id)
        await publish(s.kafka, plan.outputs, raw, plan.marks + marks)
        return {
            "batch_id": ns.batch_id,
            "sent": [
                {"file": getattr(o.event, "file_name", None), "topic": o.topic}
                for o in plan.outputs
            ],
            "replayed": [{"file": r.about, "topic": r.topic} for r in replay.replays],
            "not_retried": plan.skipped + replay.skipped,
            "already_retried": plan.already,
            "failed_files": {
                "sent": len(plan.outputs),
                "skipped": len(plan.skipped) + len(plan.already),
                "already_retried": len(plan.already),
            },
            "already_replayed": replay.already,
            "dead_letters": {
                "replayed": len(replay.replays),
                "skipped": len(replay.skipped) + len(replay.already),
                "already_replayed": len(replay.already),
            },
        }

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
