"""GPU stages against the simulator's faults: retries, Retry-After, permanent errors, hosts
that go down and come back."""

import logging
from pathlib import Path
from typing import Any

import pytest

from services.gpu_stage.main import run
from services.gpu_stage.settings import GpuStageSettings
from shared.events import FileFailed, FileReassigned, FileStageCompleted, any_event
from shared.provisioning import create_pipeline_topics
from shared.stages import GPU_STAGES
from simulator.testing import running_simulator, write_corrupt_files, write_wav
from tests.kafka_helpers import read_topic, wait_until
from tests.stage_helpers import produce_events, running, stage_input

HOST = "127.0.0.2"


def _settings(
    prefix: str, bootstrap: str, sim: object, hosts: str = f"{HOST}:4", **extra: object
) -> GpuStageSettings:
    ports = {
        f"{s}_port": int(sim.gpu_url(HOST, s).rsplit(":", 1)[1].split("/")[0])  # type: ignore[attr-defined]
        for s in GPU_STAGES
    }
    values: dict[str, Any] = {**ports, **extra}  # the settings class parses each
    return GpuStageSettings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        gpu_hosts=hosts,
        gpu_retry_base_delay_s=0.05,
        gpu_retry_max_delay_s=0.2,
        gpu_retry_max_attempts=10,
        gpu_request_timeout_s=2.0,
        **values,
    )


def _wavs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_wav(folder / f"call_{i}.wav", seconds=0.2) for i in range(n)]


async def test_transient_errors_are_retried_and_every_attempt_is_kept(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with running_simulator(error_rate=0.3, seed=3) as sim:
        settings = _settings(topic_prefix, kafka_bootstrap, sim)
        await create_pipeline_topics(settings)
        files = _wavs(tmp_path, 20)
        await produce_events(
            kafka_bootstrap,
            settings.topics.gpu("denoise", HOST),
            [stage_input("b", p, HOST) for p in files],
        )
        async with running(lambda stop: run(settings, ["denoise"], [HOST], stop)):
            out = await read_topic(
                kafka_bootstrap, [settings.topics.gpu("ivr", HOST)], lambda rs: len(rs) >= 20
            )
    events = [any_event.validate_json(r.value) for r in out]
    assert all(isinstance(e, FileStageCompleted) and e.stage == "denoise" for e in events)
    attempts = [a for e in events for a in e.attempts]  # type: ignore[union-attr]
    failed = [a for a in attempts if not a.ok]
    assert failed, "an error rate of 0.3 over 20 files must have failed some attempts"
    assert all("HTTP 503" in (a.error or "") for a in failed)
    for e in events:
        assert [a.number for a in e.attempts] == list(range(1, len(e.attempts) + 1))  # type: ignore[union-attr]
        assert e.attempts[-1].ok  # type: ignore[union-attr]


async def test_a_busy_host_answering_429_is_retried_no_sooner_than_retry_after(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with running_simulator(latency_scale=1.0) as sim:
        # One request at a time, no queue: the consumer's other in-flight requests get 429.
        await sim.set_faults(host=HOST, stage="denoise", capacity=1, queue_limit=0, latency_s=0.2)
        settings = _settings(topic_prefix, kafka_bootstrap, sim)
        await create_pipeline_topics(settings)
        files = _wavs(tmp_path, 6)
        await produce_events(
            kafka_bootstrap,
            settings.topics.gpu("denoise", HOST),
            [stage_input("b", p, HOST) for p in files],
        )
        async with running(lambda stop: run(settings, ["denoise"], [HOST], stop)):
            out = await read_topic(
                kafka_bootstrap,
                [settings.topics.gpu("ivr", HOST)],
                lambda rs: len(rs) >= 6,
                timeout_s=60,
            )
    events = [any_event.validate_json(r.value) for r in out]
    busy = 0
    for e in events:
        assert isinstance(e, FileStageCompleted)
        for before, after in zip(e.attempts, e.attempts[1:], strict=False):
            if "HTTP 429" in (before.error or ""):
                busy += 1
                waited = (after.started_at - before.started_at).total_seconds()
                assert waited >= 1.0, f"retried {waited:.2f}s after a 429 with Retry-After: 1"
    assert busy > 0


async def test_corrupt_and_missing_audio_fail_at_once_naming_file_stage_and_host(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    corrupt = write_corrupt_files(tmp_path)
    missing = tmp_path / "never_uploaded.wav"
    async with running_simulator() as sim:
        settings = _settings(topic_prefix, kafka_bootstrap, sim)
        await create_pipeline_topics(settings)
        inputs = [stage_input("b", p, HOST) for p in [*corrupt.values(), missing]]
        await produce_events(kafka_bootstrap, settings.topics.gpu("denoise", HOST), inputs)
        async with running(lambda stop: run(settings, ["denoise"], [HOST], stop)):
            out = await read_topic(
                kafka_bootstrap, [settings.topics.failed], lambda rs: len(rs) >= len(inputs)
            )
    failures = {
        f.file_name: f
        for f in (any_event.validate_json(r.value) for r in out)
        if isinstance(f, FileFailed)
    }
    assert set(failures) == {p.name for p in [*corrupt.values(), missing]}
    for name, failure in failures.items():
        assert (failure.stage, failure.host, failure.error_kind) == ("denoise", HOST, "permanent")
        assert len(failure.attempts) == 1
        assert failure.input_event["file_name"] == name
        expected = "audio not found" if name == missing.name else "undecodable audio"
        assert expected in failure.error


async def test_a_host_down_then_back_pauses_its_stage_and_fails_no_file(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_simulator() as sim:
        await sim.set_faults(host=HOST, down=True)
        settings = _settings(topic_prefix, kafka_bootstrap, sim, gpu_probe_max_delay_s=0.5)
        await create_pipeline_topics(settings)
        files = _wavs(tmp_path, 30)
        await produce_events(
            kafka_bootstrap,
            settings.topics.gpu("denoise", HOST),
            [stage_input("b", p, HOST) for p in files],
        )
        with caplog.at_level(logging.INFO):
            async with running(lambda stop: run(settings, ["denoise"], [HOST], stop)):
                await wait_until(lambda: "paused: taking no new records" in caplog.text)
                assert "circuit open (unreachable)" in caplog.text
                await sim.set_faults(host=HOST, down=False)
                out = await read_topic(
                    kafka_bootstrap,
                    [settings.topics.gpu("ivr", HOST), settings.topics.failed],
                    lambda rs: len({r.key for r in rs}) >= 30,
                    timeout_s=60,
                )
    events = [any_event.validate_json(r.value) for r in out]
    assert not [e for e in events if isinstance(e, FileFailed)]
    assert {e.file_name for e in events} == {p.name for p in files}  # type: ignore[union-attr]
    assert "resumed: taking records again" in caplog.text
    # The files held when the host went away waited: their refused attempts are kept.
    refused = [a for e in events for a in e.attempts if not a.ok]  # type: ignore[union-attr]
    assert refused and all("reach" in (a.error or "") for a in refused)


async def test_a_host_dead_past_the_failover_deadline_hands_its_files_to_the_distributor(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with running_simulator() as sim:
        await sim.set_faults(host=HOST, down=True)
        # Another host could take the files (a host alone keeps them: the next test).
        settings = _settings(
            topic_prefix,
            kafka_bootstrap,
            sim,
            hosts=f"{HOST}:4,127.0.0.3:4",
            gpu_host_failover_deadline_s=1.0,
        )
        await create_pipeline_topics(settings)
        files = _wavs(tmp_path, 30)
        await produce_events(
            kafka_bootstrap,
            settings.topics.gpu("denoise", HOST),
            [stage_input("b", p, HOST) for p in files],
        )
        async with running(lambda stop: run(settings, ["denoise"], [HOST], stop)):
            out = await read_topic(
                kafka_bootstrap,
                [settings.topics.uploads, settings.topics.failed],
                lambda rs: len(rs) >= 30,
                timeout_s=60,
            )
    events = [any_event.validate_json(r.value) for r in out]
    assert all(isinstance(e, FileReassigned) for e in events)
    moved = [e for e in events if isinstance(e, FileReassigned)]
    assert {e.file_name for e in moved} == {p.name for p in files}
    assert all(e.avoid == (HOST,) and e.assignment == 1 for e in moved)
    assert all(f"GPU host {HOST} down for more than 1s" in e.reason for e in moved)


async def test_a_host_alone_dead_past_the_failover_deadline_keeps_its_files_until_it_is_back(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_simulator() as sim:
        await sim.set_faults(host=HOST, down=True)
        settings = _settings(
            topic_prefix,
            kafka_bootstrap,
            sim,
            gpu_host_failover_deadline_s=1.0,
            gpu_probe_max_delay_s=0.5,
        )
        await create_pipeline_topics(settings)
        files = _wavs(tmp_path, 20)
        await produce_events(
            kafka_bootstrap,
            settings.topics.gpu("denoise", HOST),
            [stage_input("b", p, HOST) for p in files],
        )
        with caplog.at_level(logging.INFO):
            async with running(lambda stop: run(settings, ["denoise"], [HOST], stop)):
                await wait_until(lambda: "paused: taking no new records" in caplog.text)
                # Past the deadline the stage takes records again (a dead host's files are
                # handed on), but with no other host these wait here.
                await wait_until(lambda: "resumed: taking records again" in caplog.text)
                await sim.set_faults(host=HOST, down=False)
                out = await read_topic(
                    kafka_bootstrap,
                    [
                        settings.topics.gpu("ivr", HOST),
                        settings.topics.failed,
                        settings.topics.uploads,
                    ],
                    lambda rs: len({r.key for r in rs}) >= 20,
                    timeout_s=60,
                )
    events = [any_event.validate_json(r.value) for r in out]
    assert all(isinstance(e, FileStageCompleted) for e in events), events[:3]
    assert {e.file_name for e in events} == {p.name for p in files}  # type: ignore[union-attr]
