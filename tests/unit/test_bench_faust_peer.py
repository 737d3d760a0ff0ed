"""Issue 21's figure 3: the faust peer's pure parts (bench.faust_peer) and the figure's
arithmetic (bench.peer_figure), and the paced uploads both sides are fed with."""

import asyncio
from collections.abc import Sequence

import pytest

from bench.faust_peer import TRACKER, PeerConfig, PeerEvent, peer_roles, request_for
from bench.model_chain import ChainConfig, roles
from bench.peer_figure import PEER_FIGURE, PeerRun, peer_section
from bench.stack import paced
from tests.bench_helpers import timed_batch_of

HOSTS = ["127.0.2.2", "127.0.2.3"]


def _event(**answers: dict[str, object]) -> PeerEvent:
    return PeerEvent(
        batch_id="b", file_name="a.wav", audio_uri="file:///a.wav", stage="lid", answers=answers
    )


def test_the_peer_skips_stt_for_ivr_and_for_a_language_stt_does_not_serve() -> None:
    assert not _event(ivr={"is_ivr": False}, lid={"language": "en"}).skips_stt
    assert _event(ivr={"is_ivr": True}, lid={"language": "en"}).skips_stt
    assert _event(ivr={"is_ivr": False}, lid={"language": "fr"}).skips_stt


def test_requests_carry_the_file_and_what_earlier_hops_answered() -> None:
    event = _event(lid={"language": "hi"}, stt={"transcript": "my bill is wrong"})
    assert request_for("stt", event, "m")["inputs"] == {"language": "hi"}
    assert request_for("denoise", event, "m")["inputs"] == {}
    chat = request_for("llm1", event, "m")
    assert chat["user"] == "b/a.wav" and "my bill is wrong" in chat["messages"][0]["content"]


def test_the_peer_has_the_chains_processes_and_a_tracker() -> None:
    assert peer_roles(HOSTS) == [*roles(HOSTS), TRACKER]


def test_the_config_survives_its_trip_to_a_process() -> None:
    config = PeerConfig(
        ChainConfig("k:9092", "p", HOSTS, {}, {"stt": 1}, "http://l", 4, 8), "mysql://x"
    )
    assert PeerConfig.from_json(config.to_json()) == config


async def test_paced_sends_every_item_in_slices_at_the_rate() -> None:
    sent: list[Sequence[int]] = []

    async def send(part: Sequence[int]) -> None:
        sent.append(part)

    loop = asyncio.get_running_loop()
    started = loop.time()
    await paced(list(range(45)), 300.0, send)
    assert [x for part in sent for x in part] == list(range(45))
    assert {len(part) for part in sent[:-1]} == {30}  # a tenth of a second's worth
    assert loop.time() - started >= 30 / 300  # the second slice waited for its turn
    with pytest.raises(ValueError, match="positive"):
        await paced([1], 0.0, send)


def test_the_peer_figure_divides_cofis_median_cpu_per_file_by_the_peers() -> None:
    cofi = [
        timed_batch_of(1000, cpu, None) for cpu in (4.0, 3.0, 5.0)
    ]  # 4 ms per file in the middle
    peer = [PeerRun(1000, 20.0, {"peer-llm": cpu, "peer-tracker": 1.0}, None) for cpu in (1, 7, 3)]
    config = ChainConfig("k", "p", HOSTS, {}, {}, "", 4, 8)
    section = peer_section(cofi, peer, 50.0, config)
    figure = next(f for f in section.figures if f.name == PEER_FIGURE)
    assert figure.value == pytest.approx(1.0)  # 4 ms against 4 ms (3 + 1)
    assert figure.target == "<= 1" and figure.met is True
    assert "tracker 1.00 (1.00-1.00)" in section.details[2]
    assert "distributor 2.00 (1.50-2.50)" in section.details[4]  # half of each batch's CPU
    assert "simulator" not in section.details[4]
