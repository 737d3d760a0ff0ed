"""The tracker's sink: a poll's records in, one database transaction out."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from services.tracker.fold import RecordMeta, TrackedEvent, Undecodable, decode, fold
from services.tracker.live_milestones import LiveMilestones
from services.tracker.redaction import redact_changes
from services.tracker.store import apply_changes
from shared.logging import fields
from shared.topics import Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackerOptions:
    topic_prefix: str
    progress_interval: int = 100
    log_file_start: bool = False
    # JSON fields blanked in payloads before they are written (PAYLOAD_REDACT_FIELDS).
    redact_fields: frozenset[str] = frozenset()


class Tracker:
    def __init__(self, engine: AsyncEngine, options: TrackerOptions) -> None:
        self.engine = engine
        self.options = options
        # The open batches' resolutions between polls (live_milestones.py).
        self.live = LiveMilestones()

    async def apply_records(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """SinkRunner's `apply`: raises if the database did not commit (the runner retries)."""
        events: list[TrackedEvent] = []
        control = Topics(self.options.topic_prefix).control
        for r in records:
            if r.value is None and r.topic == control:
                continue  # a tombstone that compacts the control topic, not an event
            meta = RecordMeta(r.topic, r.partition, r.offset, r.timestamp, r.key)
            event = decode(meta, r.value)
            if isinstance(event, Undecodable):
                # The owning stage dead-letters it too; both land on one deadLetters row.
                log.warning(
                    "skipping a record the tracker cannot read: %s",
                    event.error,
                    extra=fields(
                        service="tracker", topic=r.topic, partition=r.partition, offset=r.offset
                    ),
                )
            events.append(event)
        await self.apply_events(events)

    async def apply_events(self, events: Sequence[TrackedEvent]) -> None:
        """Fold the events, then write them in one transaction."""
        changes = fold(
            events,
            topic_prefix=self.options.topic_prefix,
            log_file_start=self.options.log_file_start,
        )
        if changes.empty:
            return
        redact_changes(changes, self.options.redact_fields)
        try:
            async with self.engine.begin() as conn:
                await apply_changes(
                    conn,
                    changes,
                    progress_interval=self.options.progress_interval,
                    live=self.live,
                )
        except BaseException:
            self.live.clear()  # it moved with writes that were rolled back
            raise
