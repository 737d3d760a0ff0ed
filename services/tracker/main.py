"""Wiring: settings → migrations → engine → tracker sink → SinkRunner over every topic.

The tracker reads the topics of the GPU hosts in GPU_HOSTS (down ones included): a host added
there is read once the tracker restarts, from the beginning of its topics.
"""

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from services.tracker.batch_watch import open_batches_probe
from services.tracker.engine import make_engine
from services.tracker.kill_switch import kill_after_polls
from services.tracker.migrate import migrate
from services.tracker.retention import purge_periodically
from services.tracker.service import Tracker, TrackerOptions
from services.tracker.settings import TrackerSettings
from shared import event_loop
from shared.groups import stage_groups
from shared.kafka import make_admin, make_consumer
from shared.logging import configure_logging
from shared.observability.consumers import AiokafkaView
from shared.observability.group_lag import GroupLagGauges, StartedOnDemand, group_lag_probe
from shared.observability.health import Heartbeat
from shared.observability.service import Observability
from shared.observability.sink import database_ping, observed_sink
from shared.runtime.heap import keep_large_buffers_out_of_the_heap
from shared.runtime.lifecycle import stop_event_on_signals
from shared.runtime.sink_runner import AfterApplyHook, SinkRunner
from shared.settings_env import load_settings, service_parser

log = logging.getLogger(__name__)


async def run(
    settings: TrackerSettings,
    stop: asyncio.Event,
    *,
    after_apply: AfterApplyHook | None = None,
) -> None:
    """Track until `stop` is set. Offsets are committed only after the database commit."""
    observability = Observability(settings, "tracker")
    engine = make_engine(settings.resolved_database_url)
    # Served from the start: while migrations wait for the database, /readyz says why.
    database = observability.watch_database(database_ping(engine))
    # Open batches for the no-progress alert (a warning until the migrations made batchStatus).
    observability.refresh(
        "open batches", open_batches_probe(engine, observability.metrics.batches())
    )
    try:
        async with observability.serving():
            await _track(settings, stop, engine, observability, database, after_apply)
    finally:
        await engine.dispose()


async def _track(
    settings: TrackerSettings,
    stop: asyncio.Event,
    engine: AsyncEngine,
    observability: Observability,
    database: Heartbeat,
    after_apply: AfterApplyHook | None,
) -> None:
    url = settings.resolved_database_url
    if settings.tracker_migrate:
        await migrate(url, wait_s=settings.database_wait_s)
    tracker = Tracker(
        engine,
        TrackerOptions(
            topic_prefix=settings.topic_prefix,
            progress_interval=settings.progress_update_interval,
            log_file_start=settings.log_file_start_events,
            redact_fields=settings.redact_fields,
        ),
    )
    consumer = make_consumer(
        settings.kafka,
        group_id=settings.group_id,
        client_id=f"{settings.group_id}-consumer",
        max_poll_records=settings.tracker_max_batch,
        fetch_min_bytes=settings.tracker_fetch_min_bytes,
        fetch_max_wait_ms=settings.tracker_fetch_max_wait_ms,
    )
    if after_apply is None and settings.tracker_kill_after_polls:
        after_apply = kill_after_polls(settings.tracker_kill_after_polls)
    topics = settings.topics.all_topics(settings.host_ips)
    runner = SinkRunner(
        name="tracker",
        consumer=consumer,
        topics=topics,
        apply=observed_sink(tracker.apply_records, observability.metrics.sink(), database),
        max_batch=settings.tracker_max_batch,
        after_apply=after_apply,
    )
    observability.watch_consumer("tracker", AiokafkaView(consumer))
    admin = StartedOnDemand(make_admin(settings.kafka))
    groups = stage_groups(settings.topics, settings.host_ips, settings.gpu_stage_consumers)
    gauges = GroupLagGauges(observability.metrics.registry)
    lag = group_lag_probe(
        admin, consumer, groups, gauges, ready=lambda: bool(consumer.assignment())
    )
    observability.refresh("stage groups' lag", lag, settings.group_lag_refresh_s)
    log.info("tracker consuming %s as group %s", ", ".join(topics), settings.group_id)
    try:
        if settings.payload_retention_days or settings.batch_retention_days:
            purge = purge_periodically(
                engine,
                _days(settings.payload_retention_days),
                settings.payload_purge_interval_s,
                stop,
                batches_older_than=_days(settings.batch_retention_days),
            )
            await asyncio.gather(runner.run(stop), purge)
        else:
            await runner.run(stop)
    finally:
        await admin.close()


def _days(days: float) -> timedelta | None:
    return timedelta(days=days) if days else None


class _DuplicateEntryFilter(logging.Filter):
    """asyncmy logs every warning of a statement; an INSERT IGNORE skipping a row it already
    has is how a replay is made harmless, so one line per replayed row would only be noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Duplicate entry")


async def _serve(settings: TrackerSettings) -> None:
    await run(settings, stop_event_on_signals())


DESCRIPTION = (
    "The tracker: reads every topic and writes the tables (their only writer); stops on SIGTERM."
)


def main(argv: list[str] | None = None) -> None:
    """`cofi run tracker [run|migrate]`."""
    parser = service_parser("cofi run tracker", DESCRIPTION, TrackerSettings)
    parser.add_argument(
        "action",
        nargs="?",
        choices=("run", "migrate"),
        default="run",
        help="run: consume the topics and write the tables (default); "
        "migrate: apply the schema migrations and exit",
    )
    args = parser.parse_args(argv)
    keep_large_buffers_out_of_the_heap()
    settings = load_settings(TrackerSettings, "cofi run tracker")
    configure_logging(settings.log_level, settings.log_json, service="tracker")
    logging.getLogger("asyncmy").addFilter(_DuplicateEntryFilter())
    if args.action == "migrate":
        event_loop.run(migrate(settings.resolved_database_url, wait_s=settings.database_wait_s))
    else:
        event_loop.run(_serve(settings))
