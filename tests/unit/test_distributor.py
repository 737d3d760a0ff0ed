from collections import Counter

import pytest

from services.distributor.assignment import NoHostAvailable, choose_host
from services.distributor.routing import Incoming, route_after_lid, route_upload
from services.distributor.settings import DEFAULT_RULES
from services.distributor.triage import load_rules
from shared.events import (
    FileContext,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    encode,
)
from shared.settings import GpuHost
from shared.topics import Topics

HOSTS = [GpuHost(ip="h1", capacity=4), GpuHost(ip="h2", capacity=4), GpuHost(ip="h3", capacity=8)]
TOPICS = Topics("c")


def test_assignment_is_deterministic_and_weighted_by_capacity() -> None:
    first = [choose_host("b", f"f{i}", HOSTS) for i in range(4000)]
    assert first == [choose_host("b", f"f{i}", HOSTS) for i in range(4000)]
    share = Counter(first)
    assert 0.40 < share["h3"] / 4000 < 0.60  # capacity 8 of 16
    assert 0.18 < share["h1"] / 4000 < 0.32


def test_a_down_host_gets_nothing_and_only_its_files_move() -> None:
    down = [HOSTS[0], GpuHost(ip="h2", capacity=4, down=True), HOSTS[2]]
    for i in range(500):
        before, after = choose_host("b", f"f{i}", HOSTS), choose_host("b", f"f{i}", down)
        assert after != "h2"
        if before != "h2":
            assert after == before


def _msg(value: bytes, topic: str = "c.uploads") -> Incoming:
    return Incoming(topic=topic, partition=0, offset=7, key=b"k", value=value)


def test_upload_routes_to_the_hosts_denoise_topic() -> None:
    up = FileUploaded(batch_id="b1", file_name="a.wav", audio_uri="file:///a.wav")
    [out] = route_upload(_msg(encode(up)), HOSTS, TOPICS)
    event = out.event
    assert isinstance(event, FileStageCompleted)
    assert out.topic == f"c.denoise.{event.context.host}"
    assert event.stage == "distribute"


def test_poison_upload_becomes_a_dead_letter_with_raw_bytes() -> None:
    [out] = route_upload(_msg(b"\xff not json"), HOSTS, TOPICS)
    letter = out.event.model_dump(mode="json")
    assert out.topic == "c.failed"
    assert letter["type"] == "DeadLetter"
    assert letter["offset"] == 7


def _after_lid(**ctx: object) -> bytes:
    context = FileContext(audio_uri="file:///a.wav", host="h1", **ctx)
    return encode(FileStageCompleted(batch_id="b", file_name="a.wav", stage="lid", context=context))


def test_triage_skips_ivr_calls_and_unsupported_languages_by_rule() -> None:
    rules = load_rules(DEFAULT_RULES)
    cases = {
        _after_lid(is_ivr=True, language="en", duration_s=30.0): ("c.done", "ivr_only"),
        _after_lid(is_ivr=False, language="xx", duration_s=30.0): (
            "c.done",
            "unsupported_language",
        ),
        _after_lid(is_ivr=False, language="en", duration_s=0.5): ("c.done", "too_short"),
        _after_lid(is_ivr=False, language="en", duration_s=30.0): ("c.stt.h1", None),
    }
    for raw, (topic, rule) in cases.items():
        [out] = route_after_lid(_msg(raw, "c.triage"), rules, TOPICS)
        event = out.event
        assert isinstance(event, FileStageCompleted)
        assert out.topic == topic
        assert event.context.triage is not None
        assert event.context.triage.rule == rule


def test_triage_dead_letters_an_event_of_the_wrong_stage() -> None:
    raw = encode(
        FileStageCompleted(
            batch_id="b", file_name="a", stage="ivr", context=FileContext(audio_uri="x", host="h1")
        )
    )
    [out] = route_after_lid(_msg(raw, "c.triage"), load_rules(DEFAULT_RULES), TOPICS)
    assert out.topic == "c.failed"


def test_cancelled_batches_are_not_routed() -> None:
    up = FileUploaded(batch_id="gone", file_name="a.wav", audio_uri="file:///a.wav")
    assert route_upload(_msg(encode(up)), HOSTS, TOPICS, cancelled={"gone"}) == []
    raw = _after_lid(is_ivr=False, language="en", duration_s=30.0)
    assert route_after_lid(_msg(raw, "c.triage"), load_rules(DEFAULT_RULES), TOPICS, {"b"}) == []


def test_a_file_handed_back_goes_to_another_host_deterministically_and_counts_on() -> None:
    moved = 0
    for i in range(200):
        first = choose_host("b", f"f{i}", HOSTS)
        back = FileReassigned(
            batch_id="b",
            file_name=f"f{i}",
            audio_uri="file:///u.wav",
            stage="ivr",
            from_host=first,
            avoid=(first,),
            assignment=1,
            attempt_base=9,
        )
        [out] = route_upload(_msg(encode(back)), HOSTS, TOPICS)
        [again] = route_upload(_msg(encode(back)), HOSTS, TOPICS)
        event = out.event
        assert out == again  # a redelivered hand-back routes the same way
        assert isinstance(event, FileStageCompleted)
        ctx = event.context
        assert ctx.host != first and out.topic == f"c.denoise.{ctx.host}"
        # Rendezvous hashing without the host it left: where it would go had that host
        # never been there.
        assert ctx.host == choose_host("b", f"f{i}", [h for h in HOSTS if h.ip != first])
        assert (ctx.assignment, ctx.attempt_base, ctx.left_hosts) == (1, 9, (first,))
        assert event.next_attempt == 10
        moved += 1
    assert moved == 200


def test_a_file_every_host_failed_over_goes_round_again_and_drained_hosts_get_nothing() -> None:
    back = FileReassigned(
        batch_id="b",
        file_name="f",
        audio_uri="file:///u.wav",
        stage="stt",
        from_host="h2",
        avoid=("h1", "h2", "h3"),
        assignment=3,
        attempt_base=4,
    )
    # The whole fleet was down (or `cofi retry` resent the list): a new round, which avoids
    # only the host that just handed it back; nothing fails for an outage.
    [out] = route_upload(_msg(encode(back)), HOSTS, TOPICS)
    assert isinstance(out.event, FileStageCompleted)
    assert out.event.context.host != "h2" and out.event.context.left_hosts == ("h2",)
    assert out.event.context.host == choose_host("b", "f", [h for h in HOSTS if h.ip != "h2"])
    with pytest.raises(NoHostAvailable):
        route_upload(_msg(encode(back)), HOSTS, TOPICS, drained={"h1", "h2", "h3"})
    for i in range(100):
        up = FileUploaded(batch_id="b", file_name=f"f{i}", audio_uri="file:///u.wav")
        [routed] = route_upload(_msg(encode(up)), HOSTS, TOPICS, drained={"h3"})
        assert not routed.topic.endswith(".h3")
