"""The faust-streaming app: two routing agents, one event at a time each.

Agents run with concurrency 1 and never raise (every failure becomes a dead letter). Each
publishes through the stages' `Publisher` (payload limit, retries, a refusal dead-lettered,
a producer broken for good replaced) and returns only once the broker acknowledged the
event's outputs, so faust's ack-in-finally never acknowledges, and its commit never passes,
an event whose outputs were not written.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from services.distributor.assignment import UploadLedger
from services.distributor.ledger_replay import replay_partition
from services.distributor.producer import DistributorApp, faust_options
from services.distributor.reporting import RoutingReport
from services.distributor.routing import (
    Incoming,
    Router,
    observe_upload,
    route_after_lid,
    route_upload,
)
from services.distributor.settings import DistributorSettings
from services.distributor.triage import load_rules
from services.distributor.waiting import route_when_a_host_may_take_it
from shared.backoff import Backoff
from shared.kafka import make_producer
from shared.observability.consumers import FaustView
from shared.observability.service import Observability
from shared.output import Output
from shared.runtime.control import ControlView
from shared.runtime.publisher import Publisher

log = logging.getLogger(__name__)
# A failed upload-ledger replay (broker unreachable) is tried again after this.
REPLAY_BACKOFF = Backoff(first_delay_s=0.4, max_delay_s=5.0)


def create_app(settings: DistributorSettings) -> DistributorApp:
    rules = load_rules(settings.triage_rules_path)
    topics = settings.topics
    app = DistributorApp(
        settings.app_id,
        **faust_options(settings.kafka),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        broker_commit_interval=settings.distributor_commit_interval_s,
        # A kill -9 redoes what was routed since the last commit: commit every 8 routed events
        # (checked as events arrive; the interval covers a quiet topic), not only on the clock.
        broker_commit_every=8,
        # A killed worker's partitions move on after 10 s, as the stages' do (faust's default,
        # 60 s, stops all routing for a minute).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
    )

    audio_policy = settings.audio_uri_policy
    control = ControlView(settings.kafka, topics.control, settings.control_fetch_wait_ms)
    ledger = UploadLedger()

    def upload_router(message: Incoming) -> list[Output]:
        return route_upload(
            message,
            settings.gpu_hosts,
            topics,
            control.cancelled_batches,
            audio_policy,
            ledger,
            control.drained_hosts,
        )

    async def catch_up(message: Incoming) -> None:
        # A partition this process has not read from its start (first message since it
        # started, or records another worker routed meanwhile): rebuild the ledger first, so
        # this upload is placed as the previous owner would have placed it.
        # The agent must never raise: a failed replay (broker unreachable) is retried, and
        # routing of this partition waits for it, as producing would.
        waits = REPLAY_BACKOFF.waits()
        while ledger.needs_replay(message.partition, message.offset):
            try:
                await replay_partition(
                    settings.kafka,
                    message.topic,
                    message.partition,
                    ledger.next_offset(message.partition),
                    message.offset,
                    lambda m: observe_upload(m, settings.gpu_hosts, ledger, audio_policy),
                    lambda first: ledger.start(message.partition, first),
                )
                # Offsets without a record (none expected on this topic) count as read.
                ledger.skip(message.partition, message.offset - 1)
            except Exception:
                log.exception("upload ledger replay failed", extra={"attempt": waits.failures + 1})
                await asyncio.sleep(waits.next())

    def triage_router(message: Incoming) -> list[Output]:
        return route_after_lid(message, rules, topics, control.cancelled_batches)

    async def follow_cancellations() -> None:
        await control.run(asyncio.Event())  # runs until the worker cancels its tasks

    observability = Observability(settings, "distributor")
    observability.watch_consumer("distributor", FaustView(app))
    # Our own producer, not faust's: the publisher replaces it when it breaks for good.
    publisher = Publisher(
        lambda: make_producer(settings.kafka, "distributor"),
        service="distributor",
        dead_letter_topic=topics.failed,
        payload_limit=settings.event_payload_max_bytes,
        metrics=observability.metrics.publish("distributor"),
    )
    observability.readiness.add("publisher (distributor)", publisher.problem)

    async def run_publisher() -> None:
        # Agents that publish before it started wait for it (`Publisher.deliver`).
        await publisher.start()
        try:
            await asyncio.Event().wait()  # until the worker cancels its tasks
        finally:
            await publisher.stop()

    async def serve_observability() -> None:
        async with observability.serving():
            await asyncio.Event().wait()  # until the worker cancels its tasks

    def report(stage: str) -> RoutingReport:
        return RoutingReport(stage, topics, settings.host_ips, observability.metrics)

    def ready() -> Awaitable[bool]:
        # Cancels and drains written before this start count from the first routed record.
        return control.caught_up(asyncio.Event())

    waiting = observability.metrics.distributor_waits
    app.task(follow_cancellations)
    app.task(serve_observability)
    app.task(run_publisher)
    uploads, triage = report("distribute"), report("triage")
    _agent(
        app,
        publisher,
        topics.uploads,
        "distribute",
        upload_router,
        uploads,
        ready,
        waiting,
        catch_up,
    )
    _agent(app, publisher, topics.triage, "triage", triage_router, triage, ready, waiting)
    return app


def _agent(
    app: DistributorApp,
    publisher: Publisher,
    topic_name: str,
    name: str,
    router: Router,
    report: RoutingReport,
    ready: Callable[[], Awaitable[bool]],
    waiting: Callable[[bool], None],
    prepare: Callable[[Incoming], Awaitable[None]] | None = None,
) -> None:
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")

    async def agent(stream: Any) -> None:
        await ready()
        async for event in stream.events():
            msg = event.message
            incoming = Incoming(msg.topic, msg.partition, msg.offset, msg.key, msg.value)
            await route_one(incoming, name, router, publisher, report, prepare, waiting)

    agent.__name__ = name
    app.agent(topic, name=name, concurrency=1)(agent)


async def route_one(
    incoming: Incoming,
    name: str,
    router: Router,
    publisher: Publisher,
    report: RoutingReport,
    prepare: Callable[[Incoming], Awaitable[None]] | None = None,
    waiting: Callable[[bool], None] = lambda _: None,
) -> None:
    """Route one message; return only once the broker acknowledged its outputs (or, if it
    refused them, the message's dead letter): faust acknowledges the event after this.
    While no GPU host may take it, it waits (`waiting(True)`), never fails."""
    if prepare is not None:
        await prepare(incoming)
    outputs = await route_when_a_host_may_take_it(router, incoming, waiting)
    if await publisher.publish(outputs, incoming, f"distributor:{name}"):
        report.routed(incoming, outputs)
    else:
        report.refused(incoming)
