"""Figure 1's pure parts: CPU per file, and the bare chain's routing and request bodies."""

import json
from pathlib import Path

import pytest

from bench.model_chain import (
    ChainConfig,
    ChainRun,
    answer_headers,
    chat_request,
    gpu_request,
    host_for,
    next_topic,
    roles,
    triage_skips,
)
from bench.overhead import Chain, cpu_per_file
from services.distributor.triage import decide, load_rules
from shared.events import FileContext
from shared.pipeline import input_topic
from shared.topics import Topics

HOSTS = ["127.0.2.2", "127.0.2.3"]
T = Topics("b")
RULES = Path(__file__).resolve().parents[2] / "services" / "distributor" / "triage_rules.json"


def test_cpu_per_file_sums_what_each_process_used_and_leaves_out_the_excluded() -> None:
    before = {"distributor": 10.0, "tracker": 5.0, "simulator": 100.0}
    after = {"distributor": 13.0, "tracker": 6.0, "simulator": 150.0}
    assert cpu_per_file(before, after, 1000, exclude=("simulator",)) == pytest.approx(0.004)
    assert cpu_per_file(before, after, 1000) == pytest.approx(0.054)


def test_cpu_per_file_refuses_a_process_started_during_the_measurement() -> None:
    with pytest.raises(ValueError, match="llm"):
        cpu_per_file({"tracker": 1.0}, {"tracker": 2.0, "llm": 0.5}, 10)
    with pytest.raises(ValueError, match="no files"):
        cpu_per_file({}, {}, 0)


def test_the_median_run_is_the_median_by_cpu_per_file() -> None:
    runs = [ChainRun(100, 1.0, {"a": cpu}, 0.0, None, 90) for cpu in (0.3, 0.1, 0.2)]
    assert Chain(runs, {}, "", 0.0).median.cpu_s == {"a": 0.2}


def test_the_chain_has_the_pipelines_topics_and_process_layout() -> None:
    config = ChainConfig("k", "b", HOSTS, {}, {}, "", 4, 8)
    assert config.topics() == [t for t in T.all_topics(HOSTS) if t not in (T.failed, T.control)]
    layout = roles(HOSTS)
    assert list(layout) == ["distributor", "gpu-127.0.2.2", "gpu-127.0.2.3", "llm"]
    assert layout["gpu-127.0.2.3"] == [(s, "127.0.2.3") for s in ("denoise", "ivr", "lid", "stt")]
    sources = [input_topic(s, T, h) for hops in layout.values() for s, h in hops]
    assert sorted(sources) == sorted(config.topics()[:-1])  # every topic but done is read


def test_payload_sizes_follow_the_stage_a_topic_feeds() -> None:
    sizes = {"distribute": 1, "denoise": 2, "triage": 3, "llm2": 4, "done": 5}
    config = ChainConfig("k", "b", HOSTS, sizes, {}, "", 4, 8)
    assert config.payload_size(T.uploads) == 1
    assert config.payload_size(T.gpu("denoise", "127.0.2.3")) == 2
    assert config.payload_size(T.triage) == 3
    assert config.payload_size(T.llm("llm2")) == 4
    assert config.payload_size(T.done) == 5


def test_records_follow_the_pipelines_flow_and_triage_skips_to_done() -> None:
    headers = {"host": b"127.0.2.3", "ivr": b"0", "lang": b"en"}
    assert next_topic(T, "distribute", headers) == T.gpu("denoise", "127.0.2.3")
    assert next_topic(T, "lid", headers) == T.triage
    assert next_topic(T, "triage", headers) == T.gpu("stt", "127.0.2.3")
    assert next_topic(T, "stt", headers) == T.llm("llm1")
    assert next_topic(T, "llm2", headers) == T.done
    assert next_topic(T, "triage", headers | {"lang": b"fr"}) == T.done


@pytest.mark.parametrize("is_ivr", [True, False])
@pytest.mark.parametrize("language", ["en", "hi", "es", "fr", "de"])
def test_the_chains_triage_skips_what_the_pipelines_default_rules_skip(
    is_ivr: bool, language: str
) -> None:
    pipeline = decide(
        load_rules(RULES),
        FileContext(audio_uri="file:///a.wav", is_ivr=is_ivr, language=language, duration_s=60.0),
    )
    headers = {"ivr": b"1" if is_ivr else b"0", "lang": language.encode()}
    assert triage_skips(headers) == (pipeline.route == "skip")


def test_hosts_are_chosen_by_the_key_alone() -> None:
    chosen = {host_for(f"b/{i}.wav".encode(), HOSTS) for i in range(50)}
    assert chosen == set(HOSTS)
    assert host_for(b"b/1.wav", HOSTS) == host_for(b"b/1.wav", HOSTS)


def test_requests_carry_what_the_stages_send() -> None:
    headers = {"batch": b"b1", "file": b"a.wav", "uri": b"file:///x/a.wav", "lang": b"hi"}
    assert json.loads(gpu_request("denoise", headers)) == {
        "batch_id": "b1",
        "file_name": "a.wav",
        "audio_uri": "file:///x/a.wav",
        "inputs": {},
    }
    assert json.loads(gpu_request("stt", headers))["inputs"] == {"language": "hi"}
    chat = json.loads(chat_request("llm1", headers))
    assert chat["user"] == "b1/a.wav"
    assert chat["messages"][0]["role"] == "user"


def test_only_ivr_and_lid_answers_are_read() -> None:
    assert answer_headers("ivr", b'{"is_ivr": true, "confidence": 0.9}') == {"ivr": b"1"}
    assert answer_headers("lid", b'{"language": "es", "confidence": 0.9}') == {"lang": b"es"}
    assert answer_headers("stt", b"not even json") == {}
