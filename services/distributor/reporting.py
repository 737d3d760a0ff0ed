"""What the distributor's agents report about each routed message: metrics and log lines.

The routers are pure and return only the messages to publish; this reads those messages
back to count files per stage and GPU host, and to log failures with the file's fields.
"""

import logging
from collections.abc import Sequence

from services.distributor.routing import Incoming
from shared.events import DeadLetter, FileFailed, FileStageCompleted, any_event
from shared.logging import fields
from shared.metrics import Metrics, StageMetrics
from shared.runtime.stage_runner import Output
from shared.topics import Topics

log = logging.getLogger(__name__)


class RoutingReport:
    """One agent's report; `host` is the GPU host a file was routed to ("" if none)."""

    def __init__(self, stage: str, topics: Topics, hosts: list[str], metrics: Metrics | None):
        self.stage = stage
        self.topics = topics
        self.metrics = metrics
        self.host_of_topic = {topics.gpu(s, h): h for s in ("denoise", "stt") for h in hosts}
        self._views: dict[str, StageMetrics] = {}

    def routed(self, message: Incoming, outputs: Sequence[Output]) -> None:
        # Agents must never raise (faust would acknowledge the event anyway): a reporting
        # bug costs a count, never a file.
        try:
            self._count(message, outputs)
        except Exception:
            log.exception("could not report a routed message", extra=fields(stage=self.stage))

    def _count(self, message: Incoming, outputs: Sequence[Output]) -> None:
        for output in outputs:
            host = self.host_of_topic.get(output.topic)
            if host is not None:
                self._for(host).file_finished("done")
            elif output.topic == self.topics.failed:
                self._failed(message, any_event.validate_json(output.value))
            elif output.topic == self.topics.done:
                self._skipped(stage_event_of(output))

    def _failed(self, message: Incoming, event: object) -> None:
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


def stage_event_of(output: Output) -> FileStageCompleted:
    return FileStageCompleted.model_validate_json(output.value)
