"""A GPU host answering values of the wrong types (the simulator's `wrong_types_rate`): the
host's defect, never the file's. Its files are retried, wait for its circuit, or fail over;
none fails."""

import logging
from pathlib import Path

import pytest

from services.gpu_stage.main import run
from shared.events import FileFailed, FileReassigned, FileStageCompleted, any_event
from shared.provisioning import create_pipeline_topics
from simulator.testing import running_simulator
from tests.integration.test_gpu_stage_faults import HOST, _settings, _wavs
from tests.kafka_helpers import read_topic
from tests.stage_helpers import produce_events, running, stage_input


async def test_wrong_typed_answers_are_retried_and_fail_no_file(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_simulator(seed=5) as sim:
        await sim.set_faults(host=HOST, stage="denoise", wrong_types_rate=0.5)
        # Two attempts per round: many files spend their retries on malformed answers.
        settings = _settings(
            topic_prefix, kafka_bootstrap, sim, gpu_probe_max_delay_s=0.3
        ).model_copy(update={"gpu_retry_max_attempts": 2})
        await create_pipeline_topics(settings)
        files = _wavs(tmp_path, 20)
        await produce_events(
            kafka_bootstrap,
            settings.topics.gpu("denoise", HOST),
            [stage_input("b", p, HOST) for p in files],
        )
        with caplog.at_level(logging.WARNING):
            async with running(lambda stop: run(settings, ["denoise"], [HOST], stop)):
                out = await read_topic(
                    kafka_bootstrap,
                    [settings.topics.gpu("ivr", HOST), settings.topics.failed],
                    lambda rs: len({r.key for r in rs}) >= 20,
                    timeout_s=90,
                )
    events = [any_event.validate_json(r.value) for r in out]
    assert not [e for e in events if isinstance(e, FileFailed)]
    assert all(isinstance(e, FileStageCompleted) for e in events)
    assert {e.file_name for e in events} == {p.name for p in files}  # type: ignore[union-attr]
    malformed = [a for e in events for a in e.attempts if not a.ok]  # type: ignore[union-attr]
    assert malformed and all("malformed denoise answer" in (a.error or "") for a in malformed)
    assert "malformed answer" in caplog.text and HOST in caplog.text


async def test_a_host_whose_every_answer_is_malformed_fails_its_files_over(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_simulator() as sim:
        await sim.set_faults(host=HOST, stage="denoise", wrong_types_rate=1.0)
        settings = _settings(
            topic_prefix,
            kafka_bootstrap,
            sim,
            hosts=f"{HOST}:4,127.0.0.3:4",
            gpu_host_failover_deadline_s=1.0,
        )
        await create_pipeline_topics(settings)
        files = _wavs(tmp_path, 10)
        await produce_events(
            kafka_bootstrap,
            settings.topics.gpu("denoise", HOST),
            [stage_input("b", p, HOST) for p in files],
        )
        with caplog.at_level(logging.WARNING):
            async with running(lambda stop: run(settings, ["denoise"], [HOST], stop)):
                out = await read_topic(
                    kafka_bootstrap,
                    [settings.topics.uploads, settings.topics.failed],
                    lambda rs: len(rs) >= 10,
                    timeout_s=60,
                )
    events = [any_event.validate_json(r.value) for r in out]
    assert all(isinstance(e, FileReassigned) for e in events), events[:3]
    moved = [e for e in events if isinstance(e, FileReassigned)]
    assert {e.file_name for e in moved} == {p.name for p in files}
    assert all("(malformed:" in e.reason for e in moved), moved[0].reason
    assert "circuit open (malformed)" in caplog.text
