"""A GPU stage when every host is down: files wait instead of failing; URIs are checked."""

import asyncio
from typing import Any

from services.distributor.routing import Incoming, route_upload
from services.distributor.waiting import route_when_a_host_may_take_it
from services.gpu_stage.handler import GpuStageHandler
from shared.audio_uri import AudioUriPolicy
from shared.breaker import BreakerPolicy, CircuitBreaker
from shared.events import (
    FileContext,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    encode,
)
from shared.output import Output
from shared.retry import CallOutcome, RetryPolicy
from shared.settings import GpuHost
from shared.topics import Topics

TOPICS = Topics("c")
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0)
REFUSED = CallOutcome(error_kind="transient", error="cannot reach h1", unreachable=True)
OK = CallOutcome(response={"denoised_uri": "file:///data/a.clean.wav", "duration_s": 3.0})
TWO = [GpuHost(ip="h1"), GpuHost(ip="h2")]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += 10.0


def _input(left: tuple[str, ...] = (), uri: str = "file:///data/a.wav") -> FileStageCompleted:
    return FileStageCompleted(
        batch_id="b",
        file_name="a.wav",
        stage="distribute",
        context=FileContext(audio_uri=uri, host="h1", left_hosts=left),
    )


def _handler(answers: list[CallOutcome], hosts: list[GpuHost], clock: Clock) -> GpuStageHandler:
    calls = iter(answers)

    async def call(request: dict[str, Any], timeout_s: float) -> CallOutcome:
        return next(calls)

    breaker = CircuitBreaker(
        "denoise", "h1", BreakerPolicy(max_probe_s=10.0), clock=clock, sleep=clock.sleep
    )
    return GpuStageHandler(
        stage="denoise",
        host="h1",
        topics=TOPICS,
        policy=FAST,
        breaker=breaker,
        call_model=call,
        failover_after_s=60.0,
        hosts=hosts,
        audio_policy=AudioUriPolicy.of(["file"], ["/data"]),
    )


async def test_a_host_past_its_deadline_hands_back_a_file_another_host_may_take() -> None:
    [out] = await _handler([REFUSED] * 50, TWO, Clock())(_input())
    assert isinstance(out.event, FileReassigned) and out.event.avoid == ("h1",)


async def test_the_last_host_of_a_round_keeps_the_file_one_more_deadline_then_starts_anew() -> None:
    clock = Clock()
    [out] = await _handler([REFUSED] * 50, TWO, clock)(_input(left=("h2",)))
    event = out.event
    assert isinstance(event, FileReassigned)
    # It waited here for another deadline (no host could take it), then a new round that
    # avoids only this host: the other may be back by now.
    assert clock.now >= 120.0 and event.avoid == ("h1",)


async def test_the_last_host_of_a_round_serves_the_file_once_it_is_back() -> None:
    clock = Clock()
    [out] = await _handler([REFUSED] * 12 + [OK], TWO, clock)(_input(left=("h2",)))
    assert isinstance(out.event, FileStageCompleted) and out.event.attempts[-1].ok


async def test_the_only_usable_host_keeps_its_files_until_it_is_back() -> None:
    clock = Clock()
    alone = [GpuHost(ip="h1"), GpuHost(ip="h2", down=True)]
    [out] = await _handler([REFUSED] * 40 + [OK], alone, clock)(_input())
    assert isinstance(out.event, FileStageCompleted)
    assert clock.now > 180.0  # three deadlines and more: it never gave up on the file


async def test_a_uri_outside_the_allowlist_fails_at_the_gpu_stage_without_a_call() -> None:
    for uri in ("file:///etc/shadow", "http://169.254.169.254/latest/meta-data"):
        [out] = await _handler([], TWO, Clock())(_input(uri=uri))
        assert isinstance(out.event, FileFailed) and out.event.error_kind == "permanent"
        assert "audio_uri not sent to GPU host h1" in out.event.error
    handler = _handler([], TWO, Clock())
    handler.stage = "ivr"
    later = _input().model_copy(
        update={
            "stage": "denoise",
            "context": _input().context.model_copy(update={"denoised_uri": "file:///etc/x"}),
        }
    )
    [out] = await handler(later)
    assert isinstance(out.event, FileFailed)
    assert "the denoised audio's URI not sent" in out.event.error


def _msg(value: bytes, offset: int = 0) -> Incoming:
    return Incoming("c.uploads", 0, offset, b"b", value)


def test_a_hand_back_outside_the_allowlist_is_not_routed() -> None:
    back = FileReassigned(
        batch_id="b",
        file_name="a.wav",
        audio_uri="http://169.254.169.254/latest",
        stage="stt",
        from_host="h1",
        avoid=("h1",),
        assignment=1,
        attempt_base=2,
    )
    [out] = route_upload(_msg(encode(back)), TWO, TOPICS, audio_policy=AudioUriPolicy())
    assert out.topic == TOPICS.failed and isinstance(out.event, FileFailed)
    assert "scheme 'http' is not allowed" in out.event.error


async def test_the_distributor_waits_while_every_host_is_drained_and_routes_when_one_is_back() -> (
    None
):
    drained = {"h1", "h2"}
    waits: list[bool] = []
    slept: list[float] = []
    up = FileUploaded(batch_id="b", file_name="a.wav", audio_uri="file:///data/a.wav")

    def router(message: Incoming) -> list[Output]:
        return route_upload(message, TWO, TOPICS, drained=drained)

    async def sleep(delay: float) -> None:
        slept.append(delay)
        if len(slept) == 5:
            drained.discard("h2")  # an operator undoes a drain
        await asyncio.sleep(0)

    [out] = await route_when_a_host_may_take_it(router, _msg(encode(up)), waits.append, sleep)
    assert out.topic == "c.denoise.h2" and waits == [True, False] and len(slept) == 5
