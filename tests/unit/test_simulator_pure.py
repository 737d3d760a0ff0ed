"""Unit tests for the simulator's pure parts: outputs, WAV decoding, prompt keys, config, slots."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from simulator import outputs
from simulator.audio import (
    AudioInfo,
    AudioNotFound,
    AudioUndecodable,
    BadAudioUri,
    load_audio,
    read_wav,
    uri_to_path,
)
from simulator.config import (
    DEFAULT_LANGUAGES,
    DEFAULT_LATENCY_S,
    DEFAULT_RTF,
    DEFAULT_WINDOW_S,
    SimConfig,
    load_config,
    parse_hosts,
)
from simulator.prompt import build_content, first_line, parse_keys, user_text
from simulator.slots import Slots
from simulator.testing import write_corrupt_files, write_wav

ONE_SECOND = AudioInfo("/x.wav", frames=16_000, rate=16_000, channels=1, sample_width=2)


# -- deterministic outputs ---------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["denoise", "ivr", "lid", "stt"])
def test_stage_output_is_a_pure_function_of_the_file_name(stage: str) -> None:
    def out(name: str) -> dict[str, object]:
        return outputs.stage_output(
            stage,  # type: ignore[arg-type]
            name,
            "file:///x.wav",
            ONE_SECOND,
            ivr_rate=0.05,
            languages=DEFAULT_LANGUAGES,
        )

    assert out("call-1.wav") == out("call-1.wav")
    # Different files must not all collapse onto one answer.
    assert len({json.dumps(out(f"call-{i}.wav"), sort_keys=True) for i in range(50)}) > 1


def test_stage_output_shapes() -> None:
    d = outputs.denoise("a.wav", "file:///a.wav", ONE_SECOND)
    assert d["denoised_uri"] == "file:///a.wav" and d["duration_s"] == 1.0
    assert isinstance(d["snr_db"], float)
    i = outputs.ivr("a.wav", 0.05)
    assert isinstance(i["is_ivr"], bool) and 0 <= float(i["confidence"]) <= 1  # type: ignore[arg-type]
    s = outputs.stt("a.wav", ONE_SECOND)
    assert "duration 1.0s" in str(s["transcript"]) and int(s["words"]) >= 4  # type: ignore[call-overload]


def test_distributions_follow_the_configured_rates() -> None:
    names = [f"batch-7/call-{i:05d}.wav" for i in range(4000)]
    langs = Counter(str(outputs.lid(n, DEFAULT_LANGUAGES)["language"]) for n in names)
    assert set(langs) == set(DEFAULT_LANGUAGES)
    assert 0.82 < langs["en"] / len(names) < 0.88
    ivr_share = sum(bool(outputs.ivr(n, 0.05)["is_ivr"]) for n in names) / len(names)
    assert 0.035 < ivr_share < 0.065
    assert not any(outputs.ivr(n, 0.0)["is_ivr"] for n in names[:200])


def test_pick_weighted_edges() -> None:
    assert outputs.pick_weighted({"a": 1, "b": 0}, 0.999999) == "a"
    assert outputs.pick_weighted({"a": 1, "b": 3}, 0.3) == "b"


# -- audio -------------------------------------------------------------------------------------
def test_reads_a_good_wav(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "ok.wav", seconds=1.0)
    info = load_audio(path.as_uri())
    assert (info.frames, info.rate, info.channels, info.sample_width) == (16_000, 16_000, 1, 2)
    assert info.duration_s == 1.0
    assert load_audio(str(path)) == info  # a plain path works too


@pytest.mark.parametrize("kind", ["empty", "random", "truncated_header", "truncated_data"])
def test_corrupt_wav_is_undecodable(tmp_path: Path, kind: str) -> None:
    path = write_corrupt_files(tmp_path)[kind]
    with pytest.raises(AudioUndecodable) as err:
        read_wav(path)
    assert err.value.status == 422
    assert err.value.message.startswith("undecodable audio: ")


def test_missing_file_and_directory_are_not_found(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.wav", tmp_path):
        with pytest.raises(AudioNotFound) as err:
            read_wav(path)
        assert err.value.status == 404
        assert err.value.message == f"audio not found: {path}"


def test_uri_to_path() -> None:
    assert uri_to_path("file:///data/a%20b.wav") == Path("/data/a b.wav")
    assert uri_to_path("file://localhost/data/a.wav") == Path("/data/a.wav")
    assert uri_to_path("/data/a.wav") == Path("/data/a.wav")
    for bad in ("s3://bucket/a.wav", "file://otherhost/a.wav"):
        with pytest.raises(BadAudioUri):
            uri_to_path(bad)


# -- LLM prompt --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "keys"),
    [
        ("Return JSON with keys: summary, sentiment, topics", ["summary", "sentiment", "topics"]),
        (
            "return json with the keys: `score`, 'disposition' and risk_flags.",
            ["score", "disposition", "risk_flags"],
        ),
        ("Respond only in JSON with key: summary", ["summary"]),
        ("no instruction here", []),
    ],
)
def test_parse_keys(line: str, keys: list[str]) -> None:
    assert parse_keys(f"You are an analyst.\n{line}\nTranscript: hi") == keys


def test_build_content_fills_values_by_key_name() -> None:
    messages = [
        {
            "role": "system",
            "content": "Return JSON with keys: summary, sentiment, topics, "
            "compliance_flags, score, disposition, agent_name",
        },
        {"role": "user", "content": "Call 42\nTranscript: I want a refund for my broken router"},
    ]
    content = build_content(messages)
    assert list(content) == [
        "summary",
        "sentiment",
        "topics",
        "compliance_flags",
        "score",
        "disposition",
        "agent_name",
    ]
    assert "refund" in content["summary"]
    assert content["sentiment"] in {"positive", "neutral", "negative"}
    assert content["topics"] and all(isinstance(t, str) for t in content["topics"])
    assert isinstance(content["compliance_flags"], list)
    assert isinstance(content["score"], int) and 0 <= content["score"] <= 100
    assert content["disposition"] in {"resolved", "escalated", "callback"}
    assert isinstance(content["agent_name"], str)
    assert build_content(messages) == content  # deterministic


def test_build_content_defaults_and_user_text() -> None:
    assert list(build_content([{"role": "user", "content": "hi"}])) == ["summary"]
    parts = [{"type": "text", "text": "first line"}, {"type": "text", "text": "more"}]
    assert first_line(user_text([{"role": "user", "content": parts}])) == "first line"


# -- config ------------------------------------------------------------------------------------
def test_parse_hosts_accepts_both_forms() -> None:
    plain = parse_hosts("127.0.0.2, 127.0.0.3")
    assert [(h.address, h.capacity) for h in plain] == [("127.0.0.2", 4), ("127.0.0.3", 4)]
    sized = parse_hosts("127.0.0.2:2,127.0.0.3:8")
    assert [(h.address, h.capacity) for h in sized] == [("127.0.0.2", 2), ("127.0.0.3", 8)]
    for bad in ("", "127.0.0.2:x", "gpu-a:2"):
        with pytest.raises(ValueError):
            parse_hosts(bad)


def test_load_config_precedence(tmp_path: Path) -> None:
    cfg_file = tmp_path / "sim.json"
    cfg_file.write_text(json.dumps({"llm_port": 9000, "latency_scale": 3, "ports": {"stt": 7}}))
    env = {
        "GPU_HOSTS": "127.0.0.5:2",
        "LID_PORT": "6012",
        "SIM_LATENCY_SCALE": "2",
        "IVR_RATE": "0.5",
    }
    cfg = load_config({"config": str(cfg_file), "latency_scale": 0.5, "error_rate": None}, env)
    assert [(h.address, h.capacity) for h in cfg.hosts] == [("127.0.0.5", 2)]
    assert cfg.ports == {"denoise": 5010, "ivr": 5011, "lid": 6012, "stt": 7}
    assert cfg.llm_port == 9000 and cfg.latency_scale == 0.5 and cfg.ivr_rate == 0.5
    assert load_config({"hosts": "127.0.0.9"}, {"SIM_HOSTS": "127.0.0.8"}).hosts[0].address == (
        "127.0.0.9"
    )


def test_host_overrides_and_llm_scale_inheritance() -> None:
    cfg = SimConfig.model_validate(
        {
            "hosts": [{"address": "127.0.0.2", "capacity": 2, "error_rate": 0.5}],
            "latency_scale": 0.25,
            "error_rate": 0.1,
        }
    )
    knobs = cfg.gpu_knobs(cfg.hosts[0], "stt")
    assert (knobs.capacity, knobs.error_rate, knobs.latency_s, knobs.latency_scale) == (
        2,
        0.5,
        DEFAULT_LATENCY_S["stt"],
        0.25,
    )
    assert (knobs.rtf, knobs.window_s) == (DEFAULT_RTF["stt"], DEFAULT_WINDOW_S["stt"])
    assert cfg.llm_knobs().latency_scale == 0.25


# -- slots -------------------------------------------------------------------------------------
async def test_slots_admit_queue_and_reject() -> None:
    slots = Slots(capacity=1, queue_limit=2)
    assert await slots.acquire()
    waiters = [asyncio.create_task(slots.acquire()) for _ in range(2)]
    await asyncio.sleep(0)  # let both tasks reach their queue position (one loop turn)
    assert slots.waiting == 2
    assert not await slots.acquire()  # queue full -> reject
    slots.release()
    assert await waiters[0] and slots.active == 1 and slots.waiting == 1
    slots.resize(capacity=2)
    assert await waiters[1] and slots.active == 2


async def test_slots_cancelled_waiter_frees_its_place() -> None:
    slots = Slots(capacity=1, queue_limit=1)
    assert await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.waiting == 0
    slots.release()
    assert slots.active == 0


def test_wrong_types_answer_breaks_every_field_type() -> None:
    answer = {"duration_s": 12.5, "language": "en", "segments": [1], "ivr": True}
    garbled = outputs.wrong_types(answer)
    assert garbled["duration_s"] == 10**400  # overflows a float
    assert garbled["language"] == 12345
    assert garbled["segments"] == "not-a-list" and garbled["ivr"] == "not-a-bool"


def test_oversize_answer_holds_a_transcript_over_a_mebibyte() -> None:
    grown = outputs.oversize({"transcript": "hello", "words": 1})
    assert len(str(grown["transcript"])) > 1024 * 1024
    assert grown["words"] == 1
