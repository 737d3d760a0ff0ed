"""What the distributor's agents report about each routed message: metrics and log lines.

The routers are pure and return only the events to publish; this reads those events to count
files per stage and GPU host, and to log failures with the file's fields.
"""

import logging
from collections.abc import Sequence

from services.distributor.routing import Incoming
from shared.events import DeadLetter, Event, FileFailed, FileStageCompleted
from shared.logging import fields
from shared.metrics import Metrics, StageMetrics
from shared.output import Output
from shared.pipeline import following, input_topic, spec
from shared.topics import Topics

log = logging.getLogger(__name__)


class RoutingReport:
    """One agent's report; `host` is the GPU host a file was routed to ("" if none)."""

    def __init__(self, stage: str, topics: Topics, hosts: list[str], metrics: Metrics | None):
        self.stage = stage
        self.topics = topics
        self.metrics = metrics
        # The per-host topics this agent routes to: the next stage's input on each GPU host.
        nxt = following(spec(stage).name)
        self.host_of_topic = (
            {input_topic(nxt.name, topics, h): h for h in hosts} if nxt and nxt.per_host else {}
        )
        self._views: dict[str, StageMetrics] = {}

    def routed(self, message: Incoming, outputs: Sequence[Output]) -> None:
        # Agents must never raise (faust would acknowledge the event anyway): a reporting
        # bug costs a count, never a file.
        try:
            self._count(message, outputs)
        except Exception:
            log.exception("could not report a routed message", extra=fields(stage=self.stage))

    def refused(self, message: Incoming) -> None:
        """The broker refused the outputs: the message went to the dead letters instead."""
        log.warning(
            "outputs refused by the broker; message sent to dead letters",
            extra=fields(
                service="distributor",
                stage=self.stage,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
            ),
        )
        self._for("").dead_lettered("publish_refused")

    def _count(self, message: Incoming, outputs: Sequence[Output]) -> None:
        for output in outputs:
            host = self.host_of_topic.get(output.topic)
            if host is not None:
                self._for(host).file_finished("done")
            elif output.topic == self.topics.failed:
                self._failed(message, output.event)
            elif output.topic == self.topics.done and isinstance(output.event, FileStageCompleted):
                self._skipped(output.event)

    def _failed(self, message: Incoming, event: Event) -> None:
        if isinstance(event, DeadLetter):
            log.warning(
                "poison message sent to dead letters: %s",
                event.error[:300],
                extra=fields(
                    service="distributor",
                    stage=self.stage,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                ),
            )
            self._for("").dead_lettered("undecodable")
        elif isinstance(event, FileFailed):
            log.warning(
                "%s failed: %s",
                self.stage,
                event.error,
                extra=fields(
                    batch=event.batch_id,
                    file=event.file_name,
                    stage=self.stage,
                    host=event.host,
                    attempt=event.attempts[-1].number if event.attempts else 1,
                ),
            )
            self._for(event.host or "").file_finished("failed")

    def _skipped(self, event: FileStageCompleted) -> None:
        decision = event.context.triage
        log.debug(
            "triage skipped the file: %s",
            decision.reason if decision else "",
            extra=fields(
                batch=event.batch_id,
                file=event.file_name,
                stage=self.stage,
                host=event.context.host,
                attempt=event.attempts[-1].number if event.attempts else 1,
            ),
        )
        self._for(event.context.host or "").file_finished("skipped")

    def _for(self, host: str) -> StageMetrics:
        if host not in self._views:
            self._views[host] = (
                self.metrics.stage(self.stage, host) if self.metrics else StageMetrics()
            )
        return self._views[host]
