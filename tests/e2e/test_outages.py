"""Outages no file may fail for (issue 19's measured table, at small scale): every GPU host
down past the failover deadline, an LLM answering 429 to every call with a Retry-After
longer than the retry budget, and a host whose /health says 200 while every call is a 503.
Each ends with every file done or skipped, none failed, and nobody stepping in."""

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from cli.audio import make_batch
from cli.upload import submit
from tests.kafka_helpers import wait_until
from tests.pipeline_harness import RunningPipeline, running_pipeline

HOSTS = ("127.0.0.2", "127.0.0.3")
FILES = 40
# Ports of this file's own (below the ephemeral range), apart from the other e2e tests'.
PORTS = {"DENOISE_PORT": "25110", "IVR_PORT": "25111", "LID_PORT": "25112", "STT_PORT": "25113"}
LLM_PORT, CONTROL_PORT = 25114, 25115
# Short deadlines and probes, so an outage of a few seconds spans several of them.
QUICK = {"GPU_HOST_FAILOVER_DEADLINE_S": "1", "GPU_PROBE_MAX_DELAY_S": "0.5", **PORTS}


async def _faults(pipeline: RunningPipeline, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{pipeline.config.control_port}/faults"
        (await client.post(url, json=body)).raise_for_status()


async def _stats(pipeline: RunningPipeline) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{pipeline.config.control_port}/stats"
        response = await client.get(url)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats


async def _scalar(pipeline: RunningPipeline, sql: str, batch: str) -> Any:
    async with pipeline.engine.connect() as conn:
        return (await conn.execute(text(sql), {"b": batch})).scalar_one()


async def _submit(pipeline: RunningPipeline, audio: list[Path]) -> str:
    batch = f"out-{uuid.uuid4().hex[:6]}"
    settings = pipeline.config.settings()
    await submit(pipeline.config.bootstrap, settings.topics, batch, audio)
    return batch


def _none_failed(summary: Any) -> None:
    assert summary.terminal.get("failed", 0) == 0, summary
    assert sum(summary.terminal.values()) == FILES, summary


async def test_every_gpu_host_down_past_the_failover_deadline_fails_no_file(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    audio = make_batch(tmp_path / "audio", FILES)
    async with running_pipeline(
        topic_prefix,
        mariadb_url,
        tmp_path / "logs",
        kafka_bootstrap,
        extra_env=QUICK,
        llm_port=LLM_PORT,
        control_port=CONTROL_PORT,
    ) as pipeline:
        for host in HOSTS:
            await _faults(pipeline, {"host": host, "down": True})
        batch = await _submit(pipeline, audio)

        async def gone_round() -> bool:
            # A file on its second assignment: both hosts failed files over, the whole fleet
            # is down past its deadline (this used to fail them: "every GPU host is down").
            sql = "SELECT COALESCE(MAX(assignment), 0) FROM fileDistribution WHERE batchId = :b"
            return int(await _scalar(pipeline, sql, batch)) >= 2

        await wait_until(gone_round, 60, "files to go round the dead fleet")
        for host in HOSTS:
            await _faults(pipeline, {"host": host, "down": False})
        summary = await pipeline.wait_finished(batch, timeout_s=60)
    _none_failed(summary)


async def test_an_llm_answering_429_past_the_retry_budget_fails_no_file(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    audio = make_batch(tmp_path / "audio", FILES)
    # A Retry-After (2 s) longer than the whole retry budget (1 s): the file waits it out.
    env = {"LLM_RETRY_BUDGET_S": "1", "LLM_PROBE_MAX_DELAY_S": "0.5", **PORTS}
    async with running_pipeline(
        topic_prefix,
        mariadb_url,
        tmp_path / "logs",
        kafka_bootstrap,
        extra_env=env,
        llm_port=LLM_PORT,
        control_port=CONTROL_PORT,
    ) as pipeline:
        await _faults(pipeline, {"llm": {"rate_limit_rate": 1.0, "retry_after_s": 2}})
        batch = await _submit(pipeline, audio)

        async def throttled() -> bool:
            return int((await _stats(pipeline))["llm"]["responses"].get("429", 0)) >= 12

        await wait_until(throttled, 60, "the LLM to refuse a dozen calls")
        await _faults(pipeline, {"llm": {"rate_limit_rate": 0.0}})
        summary = await pipeline.wait_finished(batch, timeout_s=60)
        sql = (
            "SELECT COUNT(*) FROM processing_logs WHERE batch_id = :b AND status = 'failure' "
            "AND error_message LIKE '%HTTP 429%'"
        )
        throttled_attempts = int(await _scalar(pipeline, sql, batch))
    _none_failed(summary)
    assert throttled_attempts > 0  # files met the 429s, and waited instead of failing


async def test_a_host_whose_health_lies_while_every_call_fails_fails_no_file(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    audio = make_batch(tmp_path / "audio", FILES)
    liar, healthy = HOSTS[1], HOSTS[0]
    async with running_pipeline(
        topic_prefix,
        mariadb_url,
        tmp_path / "logs",
        kafka_bootstrap,
        extra_env=QUICK,
        llm_port=LLM_PORT,
        control_port=CONTROL_PORT,
    ) as pipeline:
        # /health answers 200, every model call 503, for the whole batch.
        await _faults(pipeline, {"host": liar, "error_rate": 1.0})
        batch = await _submit(pipeline, audio)
        summary = await pipeline.wait_finished(batch, timeout_s=80)
        sql = (
            "SELECT COUNT(*) FROM fileDistribution WHERE batchId = :b "
            "AND terminalState = 'done' AND ip <> :h"
        )
        async with pipeline.engine.connect() as conn:
            elsewhere = (await conn.execute(text(sql), {"b": batch, "h": liar})).scalar_one()
        calls = (await _stats(pipeline))["gpu"]["responses"][liar]
    _none_failed(summary)
    assert any(r.get("503", 0) for r in calls.values())  # the liar was called, and failed
    assert elsewhere == summary.terminal.get("done", 0)  # every done file ended on `healthy`
    assert healthy != liar
