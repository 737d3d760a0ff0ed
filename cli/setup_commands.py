"""`cofi topics`, `cofi migrate`, `cofi contracts`, `cofi purge`: set up and look after what the
pipeline runs on (topics, the tracker's tables, the generated contracts, call content)."""

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from cli.errors import CliError, Exit
from cli.options import checked_database_url, database_url, settings
from shared.database_settings import DatabaseSettings
from shared.settings import CommonSettings

if TYPE_CHECKING:
    from cli.options import Subcommands

# An operator at a terminal hears within this many seconds that the broker does not answer.
TOPICS_REACH_TIMEOUT_S = 5.0


def add(sub: "Subcommands") -> None:
    p = sub.add_parser("topics", help="create every topic (idempotent)")
    p.set_defaults(func=topics)

    p = sub.add_parser("migrate", help="create or upgrade the tracker's tables")
    p.set_defaults(func=migrate)

    p = sub.add_parser(
        "contracts",
        help="write docs/asyncapi.yaml and docs/gpu-model-api.{yaml,md} from the code",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when a document is stale")
    p.set_defaults(func=contracts)

    p = sub.add_parser(
        "purge",
        help="empty call content older than an age: processing_logs payloads (transcripts, "
        "LLM answers) and dead letters' raw bytes",
    )
    p.add_argument(
        "--older-than", required=True, metavar="AGE", help="an age: 30d, 12h, 90m or 3600s"
    )
    p.add_argument(
        "--delete-batches",
        action="store_true",
        help="delete every row of the batches that ended (Complete or Cancelled) before then",
    )
    p.set_defaults(func=purge)


def topics(ns: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaConnectionError

    from shared.provisioning import create_pipeline_topics

    s = settings(CommonSettings, ns)
    try:
        report = asyncio.run(create_pipeline_topics(s, reach_timeout_s=TOPICS_REACH_TIMEOUT_S))
    except KafkaConnectionError:
        raise CliError(
            f"no Kafka broker answered at {s.kafka_bootstrap_servers} within "
            f"{TOPICS_REACH_TIMEOUT_S:.0f} s "
            "(is KAFKA_BOOTSTRAP_SERVERS right, and the broker up?)",
            code=Exit.UNREACHABLE,
        ) from None
    plan = s.topic_plan()
    print(
        f"{len(plan)} topics ready for prefix {s.topic_prefix!r} "
        f"({len(report.created)} created, replication factor {s.topic_replication_factor}, "
        f"min.insync.replicas {s.topic_min_insync_replicas})"
    )
    for line in report.drift:
        print(f"drift: {line}", file=sys.stderr)
    if report.drift:
        print(
            f"{len(report.drift)} differences from the plan; nothing was changed "
            "(docs/operations.md, 'Running on your Kafka cluster')",
            file=sys.stderr,
        )
        return Exit.REFUSED
    return Exit.OK


def migrate(ns: argparse.Namespace) -> int:
    from services.tracker.migrate import migrate

    url = checked_database_url(settings(DatabaseSettings, ns).resolved_database_url)
    asyncio.run(migrate(url))
    return Exit.OK


def contracts(ns: argparse.Namespace) -> int:
    from cli.contracts import main as contracts

    return contracts(["--check"] if ns.check else [])


def purge(ns: argparse.Namespace) -> int:
    from cli.purge import run

    return run(database_url(ns), ns.older_than, ns.delete_batches)
