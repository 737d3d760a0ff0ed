"""What `cofi retry BATCH` sends, and sends it: the batch's failed files back to their stage
(cli/dead_letters.py), its dead letters that now decode (cli/replay.py), and the marks that
make a second retry skip both. One function, for the command and for the game day's retries."""

from collections.abc import Sequence
from typing import Any

from cli.dead_letters import plan_retry, publish, read_dead_letter_topic
from cli.replay import plan_replays, replay_marks
from shared.kafka import Kafka
from shared.topics import Topics


async def retry_batch(
    kafka: Kafka,
    topics: Topics,
    batch_id: str,
    *,
    stage: str | None = None,
    file: str | None = None,
    finished: Sequence[str] = (),
    reroute: bool = False,
    again: bool = False,
) -> dict[str, Any]:
    """Send the retry and say what it did (the command's `--json` answer). `finished`: files
    that have an end by now (the tracker's tables), never sent back."""
    found = await read_dead_letter_topic(kafka, topics.failed)
    retried = set() if again else found.replayed
    plan = plan_retry(
        found.failures,
        topics,
        batch_id,
        stage,
        file,
        list(finished),
        reroute=reroute,
        at=found.failed_at,
        retried=retried,
    )
    letters = [] if stage else found.letters
    replay = plan_replays(letters, batch_id, file, list(finished), retried)
    raw = [(r.topic, r.key, r.value) for r in replay.replays]
    marks = replay_marks(replay.replays, found.partitions, topics.failed, batch_id)
    await publish(kafka, plan.outputs, raw, plan.marks + marks)
    return {
        "batch_id": batch_id,
        "sent": [
            {"file": getattr(o.event, "file_name", None), "topic": o.topic} for o in plan.outputs
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
