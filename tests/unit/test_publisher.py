"""The publisher, on in-memory producers: acks awaited, transient errors waited out, a broken
producer replaced, a refusal dead-lettered, and nothing ever left unwritten."""

import asyncio
import base64
import json

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    TopicAuthorizationFailedError,
    UnknownProducerId,
)

from shared.events import Event
from shared.metrics import PublishMetrics
from shared.output import Output
from shared.runtime.publisher import Publisher, breaks_the_producer
from tests.unit.fake_kafka import FakeProducer, record

pytestmark = pytest.mark.unit

SOURCE = record("cofi.in", 0, 7, b"raw input")


class Number(Event):
    n: int


class Counted(PublishMetrics):
    def __init__(self) -> None:
        self.replaced = 0
        self.blocked_now = False

    def blocked(self, is_blocked: bool) -> None:
        self.blocked_now = is_blocked

    def producer_replaced(self) -> None:
        self.replaced += 1


class Blob(Event):
    body: str


class Producers:
    """Makes fake producers, remembering each; each refuses values over `max_value_bytes`."""

    def __init__(self, max_value_bytes: int | None = None) -> None:
        self.made: list[FakeProducer] = []
        self.max_value_bytes = max_value_bytes

    def __call__(self) -> FakeProducer:
        producer = FakeProducer(f"p{len(self.made)}", self.max_value_bytes)
        self.made.append(producer)
        return producer


def publisher(producers: Producers, metrics: PublishMetrics | None = None) -> Publisher:
    async def no_wait(_: float) -> None:
        await asyncio.sleep(0)

    return Publisher(
        producers, service="test", dead_letter_topic="cofi.failed", metrics=metrics, sleep=no_wait
    )


def out(n: int = 1) -> list[Output]:
    return [Output("cofi.out", b"k", Number(n=n))]


async def test_outputs_are_published_and_acknowledged() -> None:
    producers = Producers()
    pub = publisher(producers)
    assert await pub.start()
    assert await pub.publish(out(), SOURCE, "stage") is True
    assert [json.loads(s.value or b"")["n"] for s in producers.made[0].sent] == [1]
    assert pub.problem() is None


async def test_a_transient_error_is_retried_on_the_same_producer_and_reported_meanwhile() -> None:
    producers, metrics = Producers(), Counted()
    pub = publisher(producers, metrics)
    await pub.start()
    producers.made[0].fail_delivery.extend([KafkaConnectionError("down")] * 3)
    seen: list[str | None] = []

    async def note(_: float) -> None:
        seen.append(pub.problem())

    pub.sleep = note
    assert await pub.publish(out(), SOURCE, "stage") is True
    assert len(producers.made) == 1, "a transient error keeps its producer"
    assert len(seen) == 3 and all(p and "KafkaConnectionError" in p for p in seen)
    assert pub.problem() is None and not metrics.blocked_now


@pytest.mark.parametrize("error", [OutOfOrderSequenceNumber, UnknownProducerId])
async def test_a_producer_broken_for_good_is_replaced_and_publishing_resumes(
    error: type[Exception],
) -> None:
    """aiokafka's idempotent producer never resets its producer id: retrying on it would
    fail forever. The publisher stops it, starts a new one, and is not ready meanwhile."""
    producers, metrics = Producers(), Counted()
    pub = publisher(producers, metrics)
    await pub.start()
    first = producers.made[0]
    first.broken = error("sequence lost")
    during: list[str | None] = []
    real_start = FakeProducer.start

    async def observed_start(self: FakeProducer) -> None:
        during.append(pub.problem())
        await real_start(self)

    FakeProducer.start = observed_start  # type: ignore[method-assign]
    try:
        assert await pub.publish(out(5), SOURCE, "stage") is True
    finally:
        FakeProducer.start = real_start  # type: ignore[method-assign]
    assert first.stopped and first.sent == []
    assert len(producers.made) == 2 and producers.made[1].started
    assert [json.loads(s.value or b"")["n"] for s in producers.made[1].sent] == [5]
    assert during and during[0] is not None and error.__name__ in during[0]
    assert pub.replaced == 1 and metrics.replaced == 1
    assert pub.problem() is None and not metrics.blocked_now


async def test_many_callers_replace_a_broken_producer_once() -> None:
    producers = Producers()
    pub = publisher(producers)
    await pub.start()
    producers.made[0].broken = OutOfOrderSequenceNumber("lost")
    done = await asyncio.gather(*(pub.publish(out(n), SOURCE, "stage") for n in range(8)))
    assert all(done)
    assert len(producers.made) == 2
    assert sorted(json.loads(s.value or b"")["n"] for s in producers.made[1].sent) == list(range(8))


def test_which_errors_break_the_producer() -> None:
    assert breaks_the_producer(OutOfOrderSequenceNumber())
    assert breaks_the_producer(UnknownProducerId())
    assert not breaks_the_producer(KafkaConnectionError())  # retriable: an outage
    assert not breaks_the_producer(ValueError())


BIG = [Output("cofi.out", b"k", Blob(body="x" * 5000))]


async def test_a_refused_output_dead_letters_its_input_with_the_raw_bytes() -> None:
    producers = Producers(max_value_bytes=2000)
    pub = publisher(producers)
    await pub.start()
    assert await pub.publish(BIG, SOURCE, "stage") is False
    (letter,) = producers.made[0].sent
    assert letter.topic == "cofi.failed"
    body = json.loads(letter.value or b"")
    assert base64.b64decode(body["value_b64"]) == b"raw input"
    assert body["error"].startswith("publish refused: MessageSizeTooLargeError")
    assert (body["source_topic"], body["partition"], body["offset"]) == ("cofi.in", 0, 7)


async def test_a_size_refusal_of_a_batch_is_not_taken_for_the_records() -> None:
    """A topic under the producer's batch size refuses a batch whose records each fit: the
    output is sent again alone, and published, not dead-lettered."""
    producers = Producers()
    pub = publisher(producers)
    await pub.start()
    producers.made[0].fail_send.append(MessageSizeTooLargeError("the batch was too large"))
    assert await pub.publish(out(4), SOURCE, "stage") is True
    assert [s.topic for p in producers.made for s in p.sent] == ["cofi.out"]
    assert [json.loads(s.value or b"")["n"] for s in producers.made[1].sent] == [4]


async def test_a_refused_dead_letter_gives_way_to_a_minimal_one() -> None:
    producers = Producers(max_value_bytes=2000)
    pub = publisher(producers)
    await pub.start()
    source = record("cofi.in", 0, 7, b"r" * 1800)  # its dead letter, in base64, is over 2000
    assert await pub.publish(BIG, source, "stage") is False
    (letter,) = [s for p in producers.made for s in p.sent]
    body = json.loads(letter.value or b"")
    assert body["value_b64"] == "" and body.get("key_b64") is None
    assert "value 1800 bytes" in body["error"] and "dead letter refused" in body["error"]
    assert body["offset"] == 7


async def test_when_even_the_minimal_dead_letter_is_refused_it_keeps_trying_and_alerts() -> None:
    """Nothing written means nothing may be committed: publish does not return until the
    dead-letter topic takes the letter (an operator fixed its rights)."""
    producers, metrics = Producers(max_value_bytes=2000), Counted()
    pub = publisher(producers, metrics)
    await pub.start()
    refused = TopicAuthorizationFailedError("no write on cofi.failed")
    # The output, its dead letter, then four minimal ones are refused; the fifth is taken.
    producers.made[0].fail_send.extend([refused] * 6)
    tries: list[str | None] = []

    async def note(_: float) -> None:
        tries.append(pub.problem())
        await asyncio.sleep(0)

    pub.sleep = note
    assert await pub.publish(out(), SOURCE, "stage") is False
    assert len(tries) == 4 and all(t and "dead letters refused" in t for t in tries)
    assert metrics.blocked_now is False and pub.problem() is None
    (letter,) = [s for p in producers.made for s in p.sent]
    assert json.loads(letter.value or b"")["value_b64"] == ""


async def test_a_replacement_that_fails_to_start_is_made_again() -> None:
    made: list[FakeProducer] = []

    class FailsFirstStart(FakeProducer):
        async def start(self) -> None:
            if len(made) == 2:  # the first replacement
                raise KafkaError("cluster authorization being reloaded")
            await super().start()

    def new_producer() -> FakeProducer:
        made.append(FailsFirstStart(f"p{len(made)}"))
        return made[-1]

    pub = Publisher(new_producer, service="test", dead_letter_topic="cofi.failed", sleep=_no_wait)
    await pub.start()
    made[0].broken = UnknownProducerId("gone")
    assert await pub.publish(out(3), SOURCE, "stage") is True
    assert len(made) == 3 and made[1].stopped
    assert [json.loads(s.value or b"")["n"] for s in made[2].sent] == [3]


async def _no_wait(_: float) -> None:
    await asyncio.sleep(0)
