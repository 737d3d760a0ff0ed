"""A dead GPU host must not slow the healthy ones (per-host topics: no head-of-line blocking)."""

import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

from cli.audio import make_batch
from cli.upload import submit
from tests.pipeline_harness import TWO_SECOND_CALLS, running_pipeline

HOSTS = "127.0.0.2:4,127.0.0.3:4,127.0.0.4:4"
HEALTHY, DEAD = ("127.0.0.2", "127.0.0.3"), "127.0.0.4"
FILES = 360


async def _healthy_stt_rate(
    bootstrap: str, prefix: str, db_url: str, tmp: Path, audio: list[Path], dead: bool
) -> float:
    """STT (the bottleneck stage) calls per second on the healthy hosts, while they had work."""
    batch = f"iso-{uuid.uuid4().hex[:6]}"
    # Real latencies (two-second calls, 4 at a time per host, the simulator's model times):
    # the model, not the CPU, is the limit.
    async with running_pipeline(
        prefix,
        db_url,
        tmp / batch,
        bootstrap,
        gpu_hosts=HOSTS,
        latency_scale=1.0,
        extra_env={"GPU_HOST_FAILOVER_DEADLINE_S": "2"},
    ) as pipeline:
        if dead:
            async with httpx.AsyncClient() as client:
                r = await client.post(
                    f"http://127.0.0.1:{pipeline.config.control_port}/faults",
                    json={"host": DEAD, "down": True},
                )
                r.raise_for_status()
        await submit(bootstrap, pipeline.config.settings().topics, batch, audio)
        await pipeline.wait_finished(batch, timeout_s=300)
        async with pipeline.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT host, COUNT(*) AS n, MIN(startedAt) AS first, MAX(startedAt) AS last "
                        "FROM processing_logs WHERE batch_id = :b AND stage_name = 'stt' AND status = 'success' "
                        "GROUP BY host"
                    ),
                    {"b": batch},
                )
            ).all()
            dead_files = (
                await conn.execute(
                    text(
                        "SELECT COUNT(*) FROM fileDistribution WHERE batchId = :b AND ip = :h "
                        "AND terminalState = 'failed'"
                    ),
                    {"b": batch, "h": DEAD},
                )
            ).scalar_one()
    by_host = {r.host: r for r in rows}
    if dead:
        assert DEAD not in by_host
        assert dead_files == 0  # failed over to the healthy hosts, not failed
    rates: list[float] = []
    for host in HEALTHY:
        row = by_host[host]
        rates.append((row.n - 1) / (row.last - row.first).total_seconds())
    return sum(rates)


async def test_healthy_hosts_keep_their_throughput_when_a_host_is_dead(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    audio = make_batch(tmp_path / "audio", FILES, lengths=TWO_SECOND_CALLS)
    without = await _healthy_stt_rate(
        kafka_bootstrap, topic_prefix + "a", mariadb_url, tmp_path, audio, dead=False
    )
    with_dead = await _healthy_stt_rate(
        kafka_bootstrap, topic_prefix + "b", mariadb_url, tmp_path, audio, dead=True
    )
    ratio = with_dead / without
    print(
        f"\nhealthy hosts' STT throughput: {without:.1f}/s with every host up, "
        f"{with_dead:.1f}/s with {DEAD} dead; ratio {ratio:.2f} (must be >= 0.9)"
    )
    assert ratio >= 0.9
