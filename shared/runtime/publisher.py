"""Publishing a record's outputs: bounded, acknowledged, and never given up on silently.

Every service that produces (the stages' runners and the distributor's agents) publishes
through one `Publisher`:

- each event is encoded within the payload limit (`shared.payload_limit`);
- `publish` returns only once the broker acknowledged every output, so a caller that
  commits after it never commits past an output that was not written;
- a transient error (a broker outage, a timeout) is retried with `shared.backoff`, on the
  same producer;
- an error that leaves aiokafka's idempotent producer broken for good (`OutOfOrderSequence
  Number`, `UnknownProducerId`, any other non-retriable `KafkaError`) replaces the producer
  (stop, a new one, start) before the next try: the old one would never reset its producer
  id, and every retry on it would fail the same way;
- an output the broker will never take (`shared.kafka.NEVER_ACCEPTED`: too large for the
  topic's `max.message.bytes`, not authorized, an invalid topic) turns into a dead letter of
  the input, with its raw bytes; a size refusal counts only once the output was refused
  alone (a batch of other records may have been what was too large);
- if that dead letter (or a `FileFailed`, which goes to the same topic) is refused too, a
  minimal dead letter without the raw bytes is written (`dead_letters.minimal_dead_letter`);
  if even that is refused, publishing keeps trying it and says so, and the input is never
  committed with nothing written.

While it cannot publish (its last try failed, or its producer is being replaced) `problem()`
names why (a readiness check: `/readyz` answers 503) and `cofi_publish_blocked` is 1.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerClosed,
    RecordListTooLargeError,
)

from shared.backoff import Backoff
from shared.kafka import PublishRefused, refused_or_raise, start_when_reachable
from shared.logging import fields
from shared.metrics import PublishMetrics
from shared.output import Output
from shared.payload_limit import encode_bounded
from shared.runtime.dead_letters import Source, dead_letter_of, minimal_dead_letter
from shared.runtime.ports import Producer

log = logging.getLogger(__name__)

SIZE_REFUSALS = (MessageSizeTooLargeError, RecordListTooLargeError)
PUBLISH_BACKOFF = Backoff(first_delay_s=0.2, max_delay_s=5.0, jitter=0.5)
# A broken producer's stop flushes what it holds; it must not hold up its replacement.
STOP_TIMEOUT_S = 10.0
# Attempt payloads above this many bytes are trimmed (EVENT_PAYLOAD_MAX_BYTES).
DEFAULT_PAYLOAD_LIMIT = 16_384


def breaks_the_producer(exc: BaseException) -> bool:
    """An error no retry on the same producer can get past.

    aiokafka's `retriable` flag is no guide to what to wait out (a produce timeout in an
    outage is "not retriable" too), but it is to what the idempotent producer survives:
    a sequence or producer-id error stays for good on that producer."""
    return (
        isinstance(exc, KafkaError)
        and not exc.retriable
        and not isinstance(exc, KafkaTimeoutError | ProducerClosed)
    )


class Publisher:
    def __init__(
        self,
        new_producer: Callable[[], Producer],
        *,
        service: str,
        dead_letter_topic: str,
        payload_limit: int = DEFAULT_PAYLOAD_LIMIT,
        producer: Producer | None = None,
        metrics: PublishMetrics | None = None,
        backoff: Backoff = PUBLISH_BACKOFF,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`producer`: one already started (tests, tools); otherwise `start` makes one.
        `new_producer` makes each replacement."""
        self.new_producer = new_producer
        self.service = service
        self.dead_letter_topic = dead_letter_topic
        self.payload_limit = payload_limit
        self.metrics = metrics or PublishMetrics()
        self.backoff = backoff
        self.rng = rng
        self.sleep = sleep
        self.producer = producer
        self.generation = 0  # how many producers were replaced
        self.replaced = 0
        self.blocked: str | None = None
        self._usable = asyncio.Event()
        if producer is not None:
            self._usable.set()
        self._replacing = asyncio.Lock()
        # Sends one record at a time: the judge of a size refusal (see `_deliver_checked`).
        self._alone: Publisher | None = None
        self._alone_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, stop: asyncio.Event | None = None) -> bool:
        """Start a producer, waiting out a broker that is down; False if `stop` came first."""
        if self.producer is not None:
            return True
        producer = self.new_producer()
        if not await start_when_reachable(producer, f"{self.service} producer", stop):
            return False
        self.producer = producer
        self._usable.set()
        return True

    async def stop(self) -> None:
        if self._alone is not None:
            await self._alone.stop()
        producer, self.producer = self.producer, None
        self._usable.clear()
        if producer is not None:
            await producer.stop()

    def problem(self) -> str | None:
        """For readiness: why this service cannot publish now, or None."""
        return self.blocked

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, outputs: Sequence[Output], source: Source, consumer: str) -> bool:
        """Publish `outputs` of the input `source` and wait for the broker's ack. Returns False
        if they were refused and the input went to the dead letters instead (the caller
        counts it), True if they were published."""
        where = fields(
            service=consumer, topic=source.topic, partition=source.partition, offset=source.offset
        )
        try:
            await self._deliver_checked(outputs, where)
            return True
        except PublishRefused as refused:
            if any(o.topic == self.dead_letter_topic for o in outputs):
                await self._last_resort(source, consumer, f"dead letter refused: {refused}")
                return False
            log.warning(
                "output refused by the broker; input dead-lettered: %s", refused, extra=where
            )
            letter = Output(
                self.dead_letter_topic,
                source.key,
                dead_letter_of(source, consumer, f"publish refused: {refused}"),
            )
            try:
                await self._deliver_checked([letter], where)
            except PublishRefused as again:
                await self._last_resort(source, consumer, f"dead letter refused: {again}")
            return False

    async def _last_resort(self, source: Source, consumer: str, error: str) -> None:
        """The full dead letter was refused: write one without the raw bytes. If even that is
        refused (the dead-letter topic is not writable), keep trying it: the condition lasts
        until an operator fixes the topic, and the input must not be committed unwritten."""
        where = fields(
            service=consumer, topic=source.topic, partition=source.partition, offset=source.offset
        )
        log.error("%s; writing a minimal dead letter instead", error, extra=where)
        letter = Output(self.dead_letter_topic, None, minimal_dead_letter(source, consumer, error))
        waits = self.backoff.waits(self.rng)
        while True:
            try:
                await self._deliver_checked([letter], where)
                return
            except PublishRefused as refused:
                self._block(f"dead letters refused by the broker: {refused}")
                delay = waits.next()
                log.error(
                    "even a minimal dead letter is refused (fix the dead-letter topic); the "
                    "input stays uncommitted, retrying in %.1fs: %s",
                    delay,
                    refused,
                    extra=where,
                )
                await self.sleep(delay)

    async def _deliver_checked(self, outputs: Sequence[Output], where: dict[str, Any]) -> None:
        """`deliver`; a size refusal is checked by sending each output alone. The producer
        batches concurrent records of a partition, and a topic whose `max.message.bytes` is
        under the batch refuses the whole batch, records that fit included: only a record
        refused alone is too large."""
        try:
            await self.deliver(outputs, where)
        except PublishRefused as refused:
            if not isinstance(refused.__cause__, SIZE_REFUSALS):
                raise
            async with self._alone_lock:  # one record in flight: a batch of one
                if self._alone is None:
                    self._alone = Publisher(
                        self.new_producer,
                        service=f"{self.service} (one record at a time)",
                        dead_letter_topic=self.dead_letter_topic,
                        payload_limit=self.payload_limit,
                        backoff=self.backoff,
                        rng=self.rng,
                        sleep=self.sleep,
                    )
                    await self._alone.start()
                for output in outputs:
                    await self._alone.deliver([output], where)

    async def deliver(self, outputs: Sequence[Output], where: dict[str, Any]) -> None:
        """Send every output and wait for the acks, until they are acknowledged. Raises
        `PublishRefused` if the broker will never take one."""
        values = [encode_bounded(o.event, self.payload_limit) for o in outputs]
        waits = self.backoff.waits(self.rng)
        while True:
            await self._usable.wait()
            producer, generation = self.producer, self.generation
            assert producer is not None  # usable
            try:
                await _send_all(producer, outputs, values)
            except KafkaError as exc:
                if generation != self.generation:
                    continue  # sent through a producer replaced since: try the new one
                self._block(f"{type(exc).__name__}: {exc}")
                if breaks_the_producer(exc):
                    await self._replace(generation, exc, where)
                delay = waits.next()
                log.warning(
                    "publish failed, retrying in %.1fs: %s: %s",
                    delay,
                    type(exc).__name__,
                    exc,
                    extra=where,
                )
                await self.sleep(delay)
                continue
            self._unblock()
            return

    async def _replace(self, generation: int, exc: BaseException, where: dict[str, Any]) -> None:
        async with self._replacing:
            if generation != self.generation:
                return  # another caller replaced it meanwhile
            old, self.producer = self.producer, None
            self._usable.clear()
            self.generation += 1
            self.replaced += 1
            self.metrics.producer_replaced()
            log.error(
                "producer broken for good (%s: %s): replacing it",
                type(exc).__name__,
                exc,
                extra=where,
            )
            if old is not None:
                with contextlib.suppress(Exception, TimeoutError):
                    await asyncio.wait_for(old.stop(), STOP_TIMEOUT_S)
            self.producer = await self._new_started(where)
            self._usable.set()

    async def _new_started(self, where: dict[str, Any]) -> Producer:
        """A new producer, started; a start that fails otherwise than by an unreachable
        broker (which `start_when_reachable` waits out) is tried again with a new one."""
        waits = self.backoff.waits(self.rng)
        while True:
            producer = self.new_producer()
            try:
                await start_when_reachable(producer, f"{self.service} producer")
                return producer
            except KafkaError as exc:
                delay = waits.next()
                log.error(
                    "starting a new producer failed, retrying in %.1fs: %s: %s",
                    delay,
                    type(exc).__name__,
                    exc,
                    extra=where,
                )
                with contextlib.suppress(Exception):
                    await producer.stop()
                await self.sleep(delay)

    def _block(self, why: str) -> None:
        if self.blocked is None:
            self.metrics.blocked(True)
        self.blocked = f"cannot publish: {why}"

    def _unblock(self) -> None:
        if self.blocked is not None:
            self.blocked = None
            self.metrics.blocked(False)
            log.info("publishing again", extra=fields(service=self.service))


async def _send_all(producer: Producer, outputs: Sequence[Output], values: list[bytes]) -> None:
    with refused_or_raise():
        acks = [
            await producer.send(o.topic, value=value, key=o.key)
            for o, value in zip(outputs, values, strict=True)
        ]
        # Every ack is awaited (no delivery left unread), then the first failure raised.
        results = await asyncio.gather(*acks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
