"""`cofi retry --reroute` when every other GPU host is down: the file waits, it never fails.

The rerouted file's `FileReassigned` avoids the host it failed on and every host it left
before. With every other host drained or marked `:down`, the distributor starts a new round
(back to the only usable host) instead of failing the file; with no usable host at all it
holds the message and routes it again once a host is back. A host that is down without the
distributor knowing (its circuit open) takes the file, waits for its circuit or hands it back
past the failover deadline, and the hand-back goes round again."""

import asyncio

from cli.dead_letters import plan_retry
from services.distributor.routing import Incoming, route_upload
from services.distributor.waiting import route_when_a_host_may_take_it
from shared.events import (
    FileContext,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    encode,
)
from shared.output import Output
from shared.settings import GpuHost
from shared.topics import Topics

TOPICS = Topics("c")
HOSTS = [GpuHost(ip="h1"), GpuHost(ip="h2"), GpuHost(ip="h3")]


def _rerouted() -> Incoming:
    """`cofi retry --reroute` of a file that failed at stt on h1 after leaving h2."""
    failed_input = FileStageCompleted(
        batch_id="b",
        file_name="f.wav",
        stage="lid",
        context=FileContext(audio_uri="file:///f.wav", host="h1", left_hosts=("h2",)),
        next_attempt=4,
    )
    failure = FileFailed(
        batch_id="b",
        file_name="f.wav",
        stage="stt",
        host="h1",
        error_kind="transient",
        error="HTTP 503 from h1",
        input_event=failed_input.model_dump(mode="json"),
    )
    [out] = plan_retry([failure], TOPICS, "b", reroute=True).outputs
    assert isinstance(out.event, FileReassigned) and out.topic == TOPICS.uploads
    assert set(out.event.avoid) == {"h1", "h2"}
    return Incoming(TOPICS.uploads, 0, 9, out.key, encode(out.event))


def _host(outputs: list[Output]) -> str | None:
    [out] = outputs
    assert isinstance(out.event, FileStageCompleted), out.event
    return out.event.context.host


def test_every_other_host_down_sends_the_file_round_again_instead_of_failing_it() -> None:
    message = _rerouted()
    # h3, the only host it did not leave, is drained; h2 is marked down: a new round.
    hosts = [HOSTS[0], GpuHost(ip="h2", down=True), HOSTS[2]]
    assert _host(route_upload(message, hosts, TOPICS, drained={"h3"})) == "h1"


def test_no_usable_host_holds_the_rerouted_file_until_one_is_back() -> None:
    message = _rerouted()
    drained = {"h1", "h2", "h3"}
    waits: list[bool] = []
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        if len(slept) == 3:
            drained.discard("h2")  # `cofi drain h2 --undo`

    def router(m: Incoming) -> list[Output]:
        return route_upload(m, HOSTS, TOPICS, drained=drained)

    outputs = asyncio.run(route_when_a_host_may_take_it(router, message, waits.append, sleep))
    assert _host(outputs) == "h2"
    assert len(slept) == 3 and waits == [True, False]


def test_a_hand_back_from_the_last_host_it_had_not_left_goes_round_again() -> None:
    message = _rerouted()
    first = _host(route_upload(message, HOSTS, TOPICS))
    assert first == "h3"
    # h3's circuit stays open past the failover deadline: it hands the file back, having
    # now left every host. The distributor neither fails it nor raises.
    back = FileReassigned(
        batch_id="b",
        file_name="f.wav",
        audio_uri="file:///f.wav",
        stage="denoise",
        from_host="h3",
        avoid=("h1", "h2", "h3"),
        assignment=3,
        attempt_base=5,
        reason="h3 down past the failover deadline",
    )
    again = route_upload(Incoming(TOPICS.uploads, 0, 10, b"b", encode(back)), HOSTS, TOPICS)
    assert _host(again) in {"h1", "h2"}
