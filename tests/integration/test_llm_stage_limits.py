"""LLM stages against the simulated chat-completions API: one concurrency limit, 429s, junk."""

import logging
from pathlib import Path

import pytest

from services.llm_stage.main import run
from services.llm_stage.settings import LlmStageSettings
from shared.events import FileFailed, FileStageCompleted, any_event
from shared.provisioning import create_pipeline_topics
from shared.stages import LLM_STAGES
from simulator.testing import running_simulator
from tests.kafka_helpers import read_topic, wait_until
from tests.stage_helpers import produce_events, running, stage_input


def _settings(prefix: str, bootstrap: str, llm_url: str, **extra: object) -> LlmStageSettings:
    return LlmStageSettings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        llm_api_url=llm_url,
        llm_retry_base_delay_s=0.05,
        llm_retry_max_delay_s=0.2,
        **extra,  # type: ignore[arg-type]
    )


def _after_stt(n: int, tmp_path: Path) -> list[FileStageCompleted]:
    return [
        stage_input(
            "b",
            tmp_path / f"call_{i}.wav",
            "127.0.0.2",
            stage="stt",
            language="en",
            transcript=f"customer {i} asks about a bill",
        )
        for i in range(n)
    ]


async def test_llm_max_concurrency_holds_across_both_stages_of_a_process(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with running_simulator(latency_scale=1.0) as sim:
        await sim.set_llm_faults(latency_s=0.1)
        settings = _settings(
            topic_prefix,
            kafka_bootstrap,
            sim.llm_url.rsplit("/chat", 1)[0] if "/chat" in sim.llm_url else sim.llm_url,
            llm_max_concurrency=3,
        )
        await create_pipeline_topics(settings)
        await produce_events(kafka_bootstrap, settings.topics.llm("llm1"), _after_stt(40, tmp_path))
        async with running(lambda stop: run(settings, list(LLM_STAGES), stop)):
            done = await read_topic(
                kafka_bootstrap, [settings.topics.done], lambda rs: len(rs) >= 40, timeout_s=90
            )
        stats = sim.stats()["llm"]
    events = [any_event.validate_json(r.value) for r in done]
    assert all(isinstance(e, FileStageCompleted) and e.stage == "llm2" for e in events)
    assert all(e.context.llm1 and e.context.llm2 for e in events)  # type: ignore[union-attr]
    assert stats["max_concurrency_seen"] == 3  # reached, never exceeded


async def test_rate_limits_back_off_and_malformed_answers_are_dead_lettered_with_the_raw_answer(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with running_simulator() as sim:
        url = sim.llm_url.rsplit("/chat", 1)[0] if "/chat" in sim.llm_url else sim.llm_url
        settings = _settings(topic_prefix, kafka_bootstrap, url, llm_retry_max_attempts=8)
        await create_pipeline_topics(settings)
        # Every call is refused until one 429 was served, then none: a random rate could
        # serve no 429 at all, or exhaust a file's retry budget.
        await sim.set_llm_faults(rate_limit_rate=1.0, retry_after_s=0)
        await produce_events(kafka_bootstrap, settings.topics.llm("llm1"), _after_stt(10, tmp_path))
        async with running(lambda stop: run(settings, ["llm1"], stop)):
            await wait_until(
                lambda: sim.stats()["llm"]["responses"].get("429", 0) >= 1,
                timeout_s=30,
                what="the first 429",
                interval_s=0.01,
            )
            await sim.set_llm_faults(rate_limit_rate=0.0)
            ok = await read_topic(
                kafka_bootstrap,
                [settings.topics.llm("llm2")],
                lambda rs: len(rs) >= 10,
                timeout_s=60,
            )
            await sim.set_llm_faults(rate_limit_rate=0.0, malformed_rate=1.0)
            await produce_events(
                kafka_bootstrap, settings.topics.llm("llm1"), _after_stt(3, tmp_path / "junk")
            )
            dead = await read_topic(
                kafka_bootstrap, [settings.topics.failed], lambda rs: len(rs) >= 3, timeout_s=60
            )
    attempts = [a for r in ok for a in any_event.validate_json(r.value).attempts]  # type: ignore[union-attr]
    assert any("HTTP 429" in (a.error or "") for a in attempts)
    failures = [any_event.validate_json(r.value) for r in dead]
    for failure in failures:
        assert isinstance(failure, FileFailed)
        assert failure.stage == "llm1"
        # Malformed answers have their own bound, below the retry budget for outages.
        assert len(failure.attempts) == settings.llm_malformed_max_attempts == 3
        assert failure.error_kind == "permanent"
        assert "malformed answer" in failure.error
        assert failure.attempts[-1].response and "raw_answer" in failure.attempts[-1].response


async def test_a_revoked_key_pauses_the_llm_stages_until_it_works_again_and_fails_no_file(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_simulator() as sim:
        await sim.set_llm_faults(unauthorized=True)
        settings = _settings(
            topic_prefix,
            kafka_bootstrap,
            sim.llm_url.rsplit("/chat", 1)[0],
            llm_probe_max_delay_s=0.5,
        )
        await create_pipeline_topics(settings)
        await produce_events(kafka_bootstrap, settings.topics.llm("llm1"), _after_stt(20, tmp_path))
        with caplog.at_level(logging.INFO):
            async with running(lambda stop: run(settings, list(LLM_STAGES), stop)):
                await wait_until(lambda: "circuit open (auth)" in caplog.text)
                await wait_until(lambda: "paused: taking no new records" in caplog.text)
                await sim.set_llm_faults(unauthorized=False)
                llm2 = settings.topics.llm("llm2")
                out = await read_topic(
                    kafka_bootstrap,
                    [llm2, settings.topics.done, settings.topics.failed],
                    lambda rs: len({r.key for r in rs if r.topic != llm2}) >= 20,
                    timeout_s=90,
                )
    events = [any_event.validate_json(r.value) for r in out]
    assert not [e for e in events if isinstance(e, FileFailed)]
    ended = {e.file_name for r, e in zip(out, events, strict=True) if r.topic != llm2}  # type: ignore[union-attr]
    assert len(ended) == 20
    refused = [a for e in events for a in e.attempts if not a.ok]  # type: ignore[union-attr]
    assert refused and all("HTTP 401" in (a.error or "") for a in refused)
